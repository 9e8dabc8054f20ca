"""The native kernels under a bfloat16 ``MixedPrecisionCell``.

The forward kernel rounds the operands of the cell's two matmuls to bfloat16 and sums their products
in float32: the policy's definition, by MKL's bf16 GEMM (mode 2) or by float32 GEMMs of the rounded
values (mode 1); both are tested on every BLAS installed. The reference is the plain scan of a cell
that does exactly that in JAX (``_RoundedOperands``: operands rounded, the rounding passed straight
through by the gradient, everything else float32), independent of the C++ code; the float32 cell
differs from both by far more than the tolerance, so the tests see the rounding. The scan of the
policy itself also rounds each product to bfloat16 and runs its backward matmuls in bfloat16: it
agrees to bfloat16's precision. Every cell kind, both directions, both layouts, padded batches,
several chunks of steps and uneven thread splits.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import cells
from rnnjax.recurrence.backends import Backend, _native, resolve_layer
from rnnjax.recurrence.backends import _native_loading as _loading

pytestmark = pytest.mark.skipif(
    jax.default_backend() != "cpu" or not _native.available(),
    reason=f"the native backend runs on CPU: {_native.unavailable_reason() or 'not on CPU'}",
)
# 2: MKL's bf16 GEMM, where MKL is installed; 3: rnnjax's own, where the CPU has AVX512-BF16.
MODES = [1] + ([2] if _native.has_bf16() else []) + ([3] if _loading.bf16_kernel_runs() else [])


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    monkeypatch.setattr(_native, "bf16_mode", lambda: request.param)
    return request.param


INNER = {
    "lstm": cells.LSTMCell(6),
    "lstm_proj": cells.LSTMCell(6, proj_size=3),
    "gru": cells.GRUCell(6),
    "gru_reset_before": cells.GRUCell(6, reset_after=False),
    "rnn_tanh": cells.ElmanCell(6),
}


def _rounded(a):
    """a rounded to bfloat16, as float32; its gradient is the identity (straight through)."""
    return a + jax.lax.stop_gradient(a.astype(jnp.bfloat16).astype(a.dtype) - a)


@dataclasses.dataclass(frozen=True)
class _RoundedOperands(cells.MixedPrecisionCell):
    """The two matmuls' operands rounded to bfloat16, their products summed in float32."""

    def project_inputs(self, params, x):
        return self.cell.project_inputs(params._replace(w_ih=_rounded(params.w_ih)), _rounded(x))

    def recurrent_input(self, state):
        return _rounded(self.cell.recurrent_input(state))

    def recurrent_weight(self, params):
        return _rounded(self.cell.recurrent_weight(params))


def _run(cell, backend, params, x, lengths, batch_first):
    layer = rnnjax.Stack(cell=cell, bidirectional=True, batch_first=batch_first, backend=backend)

    def loss(p):
        out, state = layer(p, x, lengths)
        weights = jnp.cos(jnp.arange(out.size, dtype=out.dtype)).reshape(out.shape)
        return jnp.sum(jnp.sin(out) * weights) + sum(
            jnp.sum(jnp.cos(s)) for s in jax.tree.leaves(state)
        ), (out, state)

    (value, values), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    return values, value, grads


def _problem(inner, batch, steps, batch_first, seed=0):
    layer = rnnjax.Stack(cell=inner, bidirectional=True)
    k_p, k_x = jax.random.split(jax.random.key(seed))
    params = layer.init(k_p, 5)
    shape = (batch, steps, 5) if batch_first else (steps, batch, 5)
    x = jax.random.normal(k_x, shape)
    lengths = jnp.array([steps, steps // 2, 0, steps - 1][:batch])  # full, half, empty
    return params, x, lengths


@pytest.mark.parametrize("name", INNER)
def test_values_and_gradients_follow_the_rounded_operands(name, mode):
    # Batch-first inputs (rounded by the kernels as they gather them); time-major ones in
    # test_several_chunks_and_uneven_threads.
    batch_first = True
    inner = INNER[name]
    params, x, lengths = _problem(inner, batch=3, steps=9, batch_first=batch_first)
    got = _run(cells.MixedPrecisionCell(inner), "native", params, x, lengths, batch_first)
    want = _run(_RoundedOperands(inner), "scan", params, x, lengths, batch_first)
    jax.tree.map(
        lambda g, w: np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6), got[0], want[0]
    )
    # The backward kernel multiplies by the float32 operands where the reference's matmul VJPs
    # use the rounded ones: the gradients agree to bfloat16's precision.
    for g, w in zip(jax.tree.leaves(got[2]), jax.tree.leaves(want[2]), strict=True):
        assert g.dtype == jnp.float32
        np.testing.assert_allclose(g, w, atol=1e-2 * float(jnp.max(jnp.abs(w))) + 1e-6)
    # The float32 cell is far from both: the comparison above sees the rounding.
    plain = _run(inner, "native", params, x, lengths, batch_first)
    assert float(jnp.max(jnp.abs(plain[0][0] - want[0][0]))) > 1e-4


@pytest.mark.parametrize("name", ["lstm", "gru", "gru_reset_before"])
def test_agrees_with_the_scan_of_the_policy(name, mode):
    policy = cells.MixedPrecisionCell(INNER[name])
    params, x, lengths = _problem(INNER[name], batch=3, steps=9, batch_first=True, seed=1)
    got = _run(policy, "native", params, x, lengths, True)
    want = _run(policy, "scan", params, x, lengths, True)
    np.testing.assert_allclose(got[0][0], want[0][0], atol=2e-2)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-2)
    for g, w in zip(jax.tree.leaves(got[2]), jax.tree.leaves(want[2]), strict=True):
        np.testing.assert_allclose(g, w, atol=3e-2 * float(jnp.max(jnp.abs(w))))


@pytest.mark.parametrize("name", ["lstm_proj", "gru_reset_before"])
def test_several_chunks_and_uneven_threads(name, monkeypatch, mode):
    # 4 examples: 128 steps per chunk, so 300 steps are 3 chunks; 4 threads split 6 units 2, 1,
    # 2, 1 (projection columns 1, 1, 0, 1): each rounds its own share of the state.
    monkeypatch.setattr(_native, "allowed_cpus", lambda: 64)
    monkeypatch.setenv("RNNJAX_NATIVE_THREADS", "4")
    inner = INNER[name]
    params, x, lengths = _problem(inner, batch=4, steps=300, batch_first=False, seed=2)
    got = _run(cells.MixedPrecisionCell(inner), "native", params, x, lengths, False)
    want = _run(_RoundedOperands(inner), "scan", params, x, lengths, False)
    # Over 300 steps a last-bit difference of a float32 sum (MKL's order, XLA's) now and then
    # rounds a state element to the neighbouring bfloat16: 2e-5 here, at 1e-2 from float32.
    jax.tree.map(
        lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4), got[0], want[0]
    )
    plain = _run(inner, "native", params, x, lengths, False)
    assert float(jnp.max(jnp.abs(plain[0][0] - want[0][0]))) > 1e-3


def test_auto_picks_the_kernels_for_bfloat16_and_float32_policies_only():
    lstm = cells.LSTMCell(4)
    for policy in (jnp.bfloat16, jnp.float32):
        cell = cells.MixedPrecisionCell(lstm, policy)
        assert resolve_layer("auto", cell, platform="cpu") is Backend.NATIVE
    half = cells.MixedPrecisionCell(lstm, jnp.float16)
    assert resolve_layer("auto", half, platform="cpu") is Backend.SCAN
    with pytest.raises(ValueError, match="backend='native' runs the built-in"):
        rnnjax.Stack(cell=half, backend="native")


def test_both_modes_on_every_blas(mode):
    inner = INNER["gru"]
    # 5 steps: below PackPays' 8, the kernels multiply by W_hh unpacked.
    params, x, lengths = _problem(inner, batch=3, steps=5, batch_first=True, seed=3)
    want = _run(_RoundedOperands(inner), "scan", params, x, lengths, True)[0]
    try:
        for name in _installed_blas():
            _native.use_blas(name)  # float32 GEMMs on it; bf16 ones on MKL
            got = _run(cells.MixedPrecisionCell(inner), "native", params, x, lengths, True)[0]
            check = functools.partial(np.testing.assert_allclose, rtol=2e-5, atol=2e-6)
            jax.tree.map(check, got, want)
    finally:
        _native.use_blas("auto")


def test_mode_follows_mkl_and_the_cpu(monkeypatch):
    # (MKL has bf16, the CPU has bf16 units, rnnjax's kernel runs, vendor) -> mode
    for has_bf16, units, kernel, vendor, want in (
        (True, True, False, "GenuineIntel", 2),
        (True, False, False, "GenuineIntel", 1),
        (False, True, False, "GenuineIntel", 1),
        (True, True, True, "GenuineIntel", 2),  # MKL's AMX / AVX512-BF16 code on Intel
        (False, True, True, "GenuineIntel", 3),
        (True, True, True, "AuthenticAMD", 3),  # MKL runs no bf16 code of its own on AMD
        (False, True, True, "AuthenticAMD", 3),
    ):
        monkeypatch.setattr(_native, "has_bf16", lambda has_bf16=has_bf16: has_bf16)
        monkeypatch.setattr(_loading, "cpu_has_bf16_units", lambda units=units: units)
        monkeypatch.setattr(_loading, "bf16_kernel_runs", lambda kernel=kernel: kernel)
        monkeypatch.setattr(_loading, "cpu_vendor", lambda vendor=vendor: vendor)
        assert _native.bf16_mode() == want, (has_bf16, units, kernel, vendor)
    cell = cells.MixedPrecisionCell(cells.GRUCell(4))
    assert resolve_layer("auto", cell, platform="cpu") is Backend.NATIVE  # without MKL too


def _installed_blas():
    from rnnjax.recurrence.backends import _native_loading

    return [name for name in ("mkl", "openblas") if _native_loading.blas_addresses(name)]


def test_blocks_panels_and_tails_of_the_bf16_gemm(mode):
    # 70 examples x 9 steps: 630 rows of the input projection (blocks of 96 rows, 6 at a time,
    # then 5), 4 * 40 = 160 columns (panels of 64, a last of 32), 33 inputs and 40 states (an
    # odd and an even k). A state element now and then rounds to the neighbouring bfloat16 (a
    # last-bit difference of a float32 sum): 7e-5 at most, where a wrong block would be ~1e-1.
    inner = cells.LSTMCell(40)
    layer = rnnjax.Stack(cell=inner, bidirectional=True)  # as _run's
    k_p, k_x = jax.random.split(jax.random.key(4))
    params = layer.init(k_p, 33)
    x = jax.random.normal(k_x, (9, 70, 33))
    lengths = jnp.full((70,), 9)
    got = _run(cells.MixedPrecisionCell(inner), "native", params, x, lengths, False)
    want = _run(_RoundedOperands(inner), "scan", params, x, lengths, False)
    jax.tree.map(
        lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-3, atol=2e-4), got[0], want[0]
    )
    plain = _run(inner, "native", params, x, lengths, False)
    assert float(jnp.max(jnp.abs(plain[0][0] - want[0][0]))) > 2e-3


def _bf16(a):
    """a rounded to bfloat16, in float64."""
    return np.asarray(jnp.asarray(a, jnp.float32).astype(jnp.bfloat16), np.float64)


def test_gradients_round_the_cells_matmuls_as_the_forward_pass(mode):
    # A tanh Elman layer against a float64 loop: forward z_t = bf(x_t) bf(W_ih) + b +
    # bf(h) bf(W_hh); backward, each product of the two matmuls' transposes with both operands
    # rounded: dh_{t-1} = bf(dz_t) bf(W_hh)^T, dW_hh = bf(H)^T bf(dZ), dW_ih = bf(X)^T bf(dZ),
    # dx = bf(dZ) bf(W_ih)^T; the bias gradient sums dZ unrounded.
    inner = cells.ElmanCell(24)
    layer = rnnjax.Stack(cell=cells.MixedPrecisionCell(inner), batch_first=False, backend="native")
    k_p, k_x = jax.random.split(jax.random.key(5))
    (p,) = layer.init(k_p, 7)
    x = jax.random.normal(k_x, (6, 3, 7))  # [T, B, I], batch 3
    weights = jnp.cos(jnp.arange(6 * 3 * 24, dtype=jnp.float32)).reshape(6, 3, 24)

    def loss(params, xs):
        out, _ = layer(params, xs)
        return jnp.sum(out * weights)

    got = jax.jit(jax.grad(loss, argnums=(0, 1)))((p,), x)
    w_ih, w_hh = np.float64(p.w_ih), np.float64(p.w_hh)
    bias, xs, d_out = np.float64(p.b_ih + p.b_hh), np.float64(x), np.float64(weights)

    def reference(bf):
        hs = [np.zeros((3, 24))]
        for t in range(6):
            z = _bf16(xs[t]) @ _bf16(w_ih) + bias + _bf16(hs[-1]) @ _bf16(w_hh)
            hs.append(np.tanh(z))
        dh, dx = np.zeros((3, 24)), np.zeros_like(xs)
        d_w_ih, d_w_hh, d_b = np.zeros_like(w_ih), np.zeros_like(w_hh), np.zeros(24)
        for t in reversed(range(6)):
            dz = (dh + d_out[t]) * (1 - hs[t + 1] ** 2)
            d_w_hh += bf(hs[t]).T @ bf(dz)
            d_w_ih += bf(xs[t]).T @ bf(dz)
            d_b += dz.sum(0)
            dx[t] = bf(dz) @ bf(w_ih).T
            dh = bf(dz) @ bf(w_hh).T
        return d_w_ih, d_w_hh, d_b, dx

    want = reference(_bf16)
    (grads,), dx = got
    for g, w in zip((grads.w_ih, grads.w_hh, grads.b_ih, dx), want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    # Without the rounding every gradient differs well beyond that tolerance (the bias's too,
    # through dh).
    for unrounded, w in zip(reference(lambda a: a), want, strict=True):
        assert np.max(np.abs(unrounded - w)) > 1e-3
