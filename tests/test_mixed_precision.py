"""MixedPrecisionCell: matmul operands in bfloat16, state and parameters in float32.

Checked against the wrapped cell (float32 policy: the same numbers), a float64 loop that rounds
exactly the matmul operands to bfloat16 (the policy's definition), the scan against the fused
backend, and float32 training (gradients point the same way).
"""

import chex
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import rnnjax
from rnnjax import cells
from rnnjax.recurrence.backends import Backend, _native, resolve_layer
from tests import reference

B, T, IN, H = 3, 12, 5, 8
LENGTHS = jnp.array([T, 7, 0])


def _data(layer, seed=0):
    k_p, k_x = jax.random.split(jax.random.key(seed))
    return layer.init(k_p, IN), jax.random.normal(k_x, (B, T, IN))


def _loss(layer, params, x):
    out, state = layer(params, x, LENGTHS)
    return jnp.sum(jnp.sin(out)) + sum(jnp.sum(jnp.cos(s)) for s in jax.tree.leaves(state))


@pytest.mark.parametrize("cell", [cells.LSTMCell(H, proj_size=3), cells.GRUCell(H)])
def test_float32_policy_is_the_wrapped_cell(cell):
    plain = rnnjax.Stack(cell=cell, bidirectional=True, backend="scan")
    mixed = rnnjax.Stack(
        cell=cells.MixedPrecisionCell(cell, jnp.float32), bidirectional=True, backend="scan"
    )
    params, x = _data(plain)
    want = jax.value_and_grad(lambda p: _loss(plain, p, x))(params)
    chex.assert_trees_all_close(
        jax.value_and_grad(lambda p: _loss(mixed, p, x))(params), want, rtol=1e-6, atol=1e-6
    )


def _bf16(a):
    return np.asarray(np.asarray(a, np.float32).astype(ml_dtypes.bfloat16), np.float64)


def test_bfloat16_lstm_follows_a_float64_loop_that_rounds_only_the_matmul_operands():
    cell = cells.LSTMCell(H)
    layer = rnnjax.Stack(cell=cells.MixedPrecisionCell(cell), backend="scan")
    params, x = _data(layer, seed=1)
    out, state = layer(params, x)
    assert out.dtype == jnp.float32 and all(s.dtype == jnp.float32 for s in state)
    p = params[0]
    bias = _bf16(_bf16(p.b_ih) + _bf16(p.b_hh))
    for b in range(B):
        h, c = np.zeros(H), np.zeros(H)
        for t in range(T):
            z = _bf16(_bf16(_bf16(x[b, t]) @ _bf16(p.w_ih)) + bias)
            z = z + _bf16(_bf16(h) @ _bf16(p.w_hh))  # state and gate math in full precision
            i, f, g, o = np.split(z, 4)
            c = reference._sigmoid(f) * c + reference._sigmoid(i) * np.tanh(g)
            h = reference._sigmoid(o) * np.tanh(c)
            np.testing.assert_allclose(out[b, t], h, atol=1e-2)
        np.testing.assert_allclose(state.cell[0, b], c, atol=1e-2)
    # The float32 cell differs by more than the policy's rounding: the test sees the policy.
    plain, _ = rnnjax.Stack(cell=cell, backend="scan")(params, x)
    assert float(jnp.max(jnp.abs(plain - out))) > 1e-4


@pytest.mark.parametrize("cell", [cells.LSTMCell(H), cells.GRUCell(H, reset_after=False)])
def test_fused_backend_runs_the_policy_as_the_scan_does(cell):
    mixed = cells.MixedPrecisionCell(cell)
    scan = rnnjax.Stack(cell=mixed, backend="scan", hoist_inputs=True)
    fused = rnnjax.Stack(cell=mixed, backend="fused", hoist_inputs=True)
    params, x = _data(scan, seed=2)
    want_value, want_grads = jax.value_and_grad(lambda p: _loss(scan, p, x))(params)
    value, grads = jax.value_and_grad(lambda p: _loss(fused, p, x))(params)
    np.testing.assert_allclose(value, want_value, rtol=1e-3)
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True):
        assert g.dtype == jnp.float32
        np.testing.assert_allclose(g, w, atol=2e-2 * float(jnp.max(jnp.abs(w))))


def test_bfloat16_gradients_point_where_float32_gradients_point():
    cell = cells.LSTMCell(H)
    plain = rnnjax.Stack(cell=cell, backend="scan")
    mixed = rnnjax.Stack(cell=cells.MixedPrecisionCell(cell), backend="fused")
    params, x = _data(plain, seed=3)
    want = jax.grad(lambda p: _loss(plain, p, x))(params)
    got = jax.grad(lambda p: _loss(mixed, p, x))(params)
    flat = lambda tree: jnp.concatenate([jnp.ravel(a) for a in jax.tree.leaves(tree)])  # noqa: E731
    cosine = (
        jnp.dot(flat(got), flat(want)) / jnp.linalg.norm(flat(got)) / jnp.linalg.norm(flat(want))
    )
    assert float(cosine) > 0.999


def test_backends_and_bad_arguments():
    mixed = cells.MixedPrecisionCell(cells.LSTMCell(H))
    # The native kernels run the bfloat16 policy (tests/test_native_bf16.py).
    on_cpu = Backend.NATIVE if _native.available() else Backend.SCAN
    assert resolve_layer("auto", mixed, platform="cpu") is on_cpu
    assert resolve_layer("auto", mixed, platform="gpu") is Backend.FUSED
    with pytest.raises(ValueError, match="backend='native' runs the built-in"):
        rnnjax.Stack(
            cell=cells.MixedPrecisionCell(cells.LSTMCell(H), jnp.float16), backend="native"
        )
    with pytest.raises(ValueError, match="cell must be fusable"):
        cells.MixedPrecisionCell(cells.IndRNNCell(H))
    with pytest.raises(ValueError, match="compute_dtype must be a floating dtype"):
        cells.MixedPrecisionCell(cells.GRUCell(H), jnp.int8)
    with pytest.raises(ValueError, match="cell must be an rnnjax.cells.Cell"):
        cells.MixedPrecisionCell("lstm")
