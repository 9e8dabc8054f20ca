"""The native CPU backend never ends the process and computes what the scan computes, bad input too.

Inputs that once crashed the process (parameters of another size, zero input features, buffers
of the wrong size reaching the kernels, a worker thread that cannot start or throws) run in a
subprocess, which must end with a clean Python error and no signal. NaN and inf must propagate
through every cell, forward and backward, as in JAX's derivative of the scan; NaN or inf at padded
positions reaches no output and no gradient, on every backend.
"""

import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import cells
from rnnjax.recurrence._unroll import scan_time_major
from rnnjax.recurrence.backends import _native, _native_loading

ROOT = pathlib.Path(__file__).resolve().parents[1]

needs_native = pytest.mark.skipif(
    not _native.available() or jax.default_backend() != "cpu",
    reason=f"the native backend runs on CPU: {_native.unavailable_reason() or 'JAX is not on CPU'}",
)

CELLS = {
    "lstm": cells.LSTMCell(5),
    "gru": cells.GRUCell(5),
    "gru_nobias": cells.GRUCell(5, bias=False),
    "rnn_tanh": cells.ElmanCell(5),
    "rnn_relu": cells.ElmanCell(5, "relu"),
}


def _isolated(code: str, **env) -> str:
    """Runs ``code`` in a fresh Python; asserts it ended by itself (no signal, exit 0)."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode >= 0, f"killed by signal {-result.returncode}:\n{result.stderr}"
    assert result.returncode == 0, result.stderr
    return result.stdout


# ---- parameters of another configuration: a ValueError at the layer boundary ------------------

_SETUP = """
import jax, jax.numpy as jnp, rnnjax
from rnnjax.cells import CellParams
x = jnp.ones((2, 5, 3))
def report(call):
    try:
        jax.block_until_ready(call())
    except ValueError as error:
        print("ValueError:", error)
"""

CRASHES = {
    # Once a heap overflow (segfault): params of LSTM(16) through LSTM(8), a checkpoint restored
    # after hidden_size changed.
    "larger_hidden": (
        "report(lambda: rnnjax.LSTM(8)(rnnjax.LSTM(16).init(jax.random.key(0), 3), x))",
        r"params[0].w_ih must have shape (3, 32) (as layer.init(key, input_size=3) gives for "
        r"LSTM(hidden_size=8, ...)), got (3, 64)",
    ),
    # Once uninitialised memory in h_n.
    "smaller_hidden": (
        "report(lambda: rnnjax.GRU(16)(rnnjax.GRU(8).init(jax.random.key(0), 3), x))",
        "params[0].w_ih must have shape (3, 48)",
    ),
    # Once sgemm with lda = 0 (MKL: "Parameter 9 was incorrect").
    "zero_input_features": (
        "p = CellParams(jnp.zeros((0, 16)), jnp.zeros((4, 16)), jnp.zeros(16), jnp.zeros(16))\n"
        "report(lambda: rnnjax.LSTM(4)((p,), jnp.ones((2, 5, 0))))",
        "x must have at least one feature (I > 0), got shape (2, 5, 0)",
    ),
}


@pytest.mark.parametrize("case", CRASHES)
def test_bad_parameters_raise_a_value_error_in_the_layer(case):
    code, message = CRASHES[case]
    assert f"ValueError: {message}" in _isolated(_SETUP + code)


LAYER_ERRORS = {
    "gru_params_to_lstm": (
        lambda backend: rnnjax.LSTM(4, backend=backend)(rnnjax.GRU(4).init(KEY, 3), X),
        r"params\[0\].w_ih must have shape \(3, 16\) \(as layer.init\(key, input_size=3\) gives "
        r"for LSTM\(hidden_size=4, ...\)\), got \(3, 12\)",
    ),
    "stale_second_layer": (
        lambda backend: rnnjax.RNN(4, num_layers=2, backend=backend)(
            (lambda p: (p[0], p[1]._replace(w_hh=jnp.zeros((5, 4)))))(
                rnnjax.RNN(4, num_layers=2).init(KEY, 3)
            ),
            X,
        ),
        r"params\[1\].w_hh must have shape \(4, 4\) .*got \(5, 4\)",
    ),
    "missing_bias": (
        lambda backend: rnnjax.GRU(4, backend=backend)(rnnjax.GRU(4, bias=False).init(KEY, 3), X),
        r"params\[0\] must hold \(w_ih, w_hh, b_ih, b_hh\) .*got \(w_ih, w_hh\)",
    ),
}
KEY = jax.random.key(0)
X = jnp.ones((2, 4, 3))


@pytest.mark.parametrize("case", LAYER_ERRORS)
@pytest.mark.parametrize("backend", ["scan", "fused", "native"])
def test_every_backend_gets_the_same_parameter_error(case, backend):
    call, message = LAYER_ERRORS[case]
    with pytest.raises(ValueError, match=message):
        call(backend)


# ---- the kernels check every buffer themselves ------------------------------------------------


@needs_native
def test_kernels_refuse_inconsistent_buffers():
    # Calls the FFI targets directly, past the layer's checks: each returns an error, forward
    # and backward, rank errors before any dimension is read.
    out = _isolated(
        """
        import jax, jax.numpy as jnp, numpy as np
        from rnnjax.recurrence.backends import _native
        assert _native.available()
        f32 = lambda *s: jnp.zeros(s, jnp.float32)
        T, B, I, H = 3, 2, 4, 8
        def forward(x, w_ih, bias, w_hh, w_hr, b_hn, h0, c0, valid, results=None, kind=0,
                    **changed):
            shapes = results or [(T, B, H), (B, H), (B, H), (0, B, 4 * H), (0, B, H)]
            call = jax.ffi.ffi_call("rnnjax_forward", [jax.ShapeDtypeStruct(s, jnp.float32)
                                    for s in shapes])
            attributes = dict(kind=np.int32(kind), reverse=False, keep=False, batch_major=False,
                              threads=np.int32(2), bf16=np.int32(0), blas=np.int32(0))
            return call(x, w_ih, bias, w_hh, w_hr, b_hn, h0, c0, valid,
                        **{**attributes, **changed})
        good = [f32(T, B, I), f32(I, 4 * H), f32(4 * H), f32(H, 4 * H), f32(0, 0), f32(H),
                f32(B, H), f32(B, H), jnp.ones((T, B), jnp.uint8)]
        jax.block_until_ready(forward(*good))
        P = 3  # a projected LSTM: w_hh [P, 4H], w_hr [H, P], h [B, P]
        projected = [f32(T, B, I), f32(I, 4 * H), f32(4 * H), f32(P, 4 * H), f32(H, P), f32(H),
                     f32(B, P), f32(B, H), jnp.ones((T, B), jnp.uint8)]
        jax.block_until_ready(forward(
            *projected, results=[(T, B, P), (B, P), (B, H), (0, B, 4 * H), (0, B, H)]))
        cases = {
            "h0": {6: f32(B, 2 * H)},       # the old heap overflow: a state of another size
            "c0": {7: f32(B, H // 2)},
            "b_hn": {5: f32(H // 2)},
            "bias": {2: f32(3 * H)},
            "w_hh": {3: f32(H, 3 * H)},  # a GRU's
            "w_hr": {4: f32(H, P)},  # a projection of an LSTM whose w_hh has H rows
            "x rank": {0: f32(T, B)},
            "valid": {8: jnp.ones((T, B + 1), jnp.uint8)},
        }
        for name, change in cases.items():
            args = [change.get(i, a) for i, a in enumerate(good)]
            try:
                jax.block_until_ready(forward(*args))
                print(name, "accepted")
            except Exception as error:
                print(name, "->", str(error).splitlines()[0])
        try:  # a projection for a GRU
            gru = [f32(T, B, I), f32(I, 3 * H), f32(3 * H), f32(P, 3 * H), f32(H, P), f32(H),
                   f32(B, P), f32(0), jnp.ones((T, B), jnp.uint8)]
            jax.block_until_ready(forward(*gru, kind=1,
                                          results=[(T, B, P), (B, P), (0,), (0, B, 4 * H), (0,)]))
            print("gru projection accepted")
        except Exception as error:
            print("gru projection ->", str(error).splitlines()[0])
        try:  # results of another size: h_n of a larger layer
            shapes = [(T, B, 2 * H), (B, 2 * H), (B, H), (0, B, 4 * H), (0, B, H)]
            jax.block_until_ready(forward(*good, results=shapes))
            print("results accepted")
        except Exception as error:
            print("results ->", str(error).splitlines()[0])
        from rnnjax import _cpu_recurrence
        from rnnjax.recurrence.backends import _native_loading
        installed = next(n for n in ("openblas", "mkl") if _native_loading.blas_addresses(n))
        # Table 1 without a bf16 GEMM: its float32 functions only.
        _cpu_recurrence.set_blas(1, *_native_loading.blas_addresses(installed)[:5])
        for name, changed in {"blas 2": dict(blas=np.int32(2)), "bf16 4": dict(bf16=np.int32(4)),
                              "bf16 without it": dict(bf16=np.int32(2), blas=np.int32(1))}.items():
            try:
                jax.block_until_ready(forward(*good, **changed))
                print(name, "accepted")
            except Exception as error:
                print(name, "->", str(error).splitlines()[0])
        call = jax.ffi.ffi_call("rnnjax_backward", [jax.ShapeDtypeStruct(s, jnp.float32) for s
            in [(T, B, I), (I, 4 * H), (H, 4 * H), (0, 0), (4 * H,), (4 * H,), (B, H), (B, H)]])
        try:  # saved activations of another size
            jax.block_until_ready(call(
                f32(T, B, I), f32(I, 4 * H), f32(H, 4 * H), f32(0, 0), f32(T, B, 2 * H),
                f32(T, B, H),
                f32(B, H), f32(T, B, H), jnp.ones((T, B), jnp.uint8), f32(T, B, H), f32(B, H),
                f32(B, H),
                kind=np.int32(0), reverse=False, need_dx=True, batch_major=False,
                threads=np.int32(2), bf16=np.int32(0), blas=np.int32(0)))
            print("backward accepted")
        except Exception as error:
            print("backward ->", str(error).splitlines()[0])
        """
    )
    assert "accepted" not in out, out
    for expected in (
        "h0 -> INVALID_ARGUMENT: rnnjax: h0 has 32 elements, expected 16",
        "c0 -> INVALID_ARGUMENT: rnnjax: c0 has 8 elements, expected 16",
        "b_hn -> INVALID_ARGUMENT: rnnjax: b_hn has 4 elements, expected 8",
        "bias -> INVALID_ARGUMENT: rnnjax: bias has 24 elements, expected 32",
        "w_hh -> INVALID_ARGUMENT: rnnjax: w_hh is [8, 24], expected [P, G*H] = [8, 32]",
        "w_hr -> INVALID_ARGUMENT: rnnjax: w_hr is [8, 3], expected [H, P] with P = w_hh's rows "
        "below H",
        "gru projection -> INVALID_ARGUMENT: rnnjax: w_hr (a projection) is for an LSTM only",
        "x rank -> INVALID_ARGUMENT: rnnjax: x is [3, 2], expected [T, B, I]",
        "valid -> INVALID_ARGUMENT: rnnjax: valid is [3, 3], expected [T, B] = [3, 2]",
        "results -> INVALID_ARGUMENT: rnnjax: out has 96 elements, expected 48",
        "backward -> INVALID_ARGUMENT: rnnjax: acts has 96 elements, expected 192",
        "blas 2 -> INVALID_ARGUMENT: rnnjax: blas must be 0 or 1",
        "bf16 4 -> INVALID_ARGUMENT: rnnjax: bf16 must be 0, 1, 2 or 3",
        "bf16 without it -> INVALID_ARGUMENT: rnnjax: bf16 needs MKL's cblas_gemm_bf16bf16f32",
    ):
        assert expected in out, out


# ---- threads that fail ------------------------------------------------------------------------


@needs_native
def test_thread_failures_end_in_an_error_or_fewer_threads_never_an_abort():
    # "thread_start": the second worker cannot start (a process limit): the call runs on the
    # threads that did, with the scan's results. "worker": a worker throws std::bad_alloc: the
    # others leave the barrier and the call raises.
    out = _isolated(
        """
        import os, jax, jax.numpy as jnp, numpy as np
        from rnnjax import cells
        from rnnjax.recurrence._unroll import scan_time_major
        from rnnjax.recurrence.backends import _native
        _native.allowed_cpus = lambda: 8  # 4 threads on any machine
        os.environ["RNNJAX_NATIVE_THREADS"] = "4"
        cell = cells.LSTMCell(64)
        params = cell.init(jax.random.key(0), 3)
        xs = jax.random.normal(jax.random.key(1), (5, 2, 3))
        s0 = jax.tree.map(lambda s: jnp.zeros((2,) + s.shape), cell.initial_state())
        def loss(p, backend):
            out, _ = scan_time_major(cell, p, xs, s0, backend=backend)
            return jnp.sum(jnp.sin(out))
        want = jax.value_and_grad(loss)(params, "scan")
        os.environ["RNNJAX_NATIVE_TEST_FAULT"] = "thread_start"
        got = jax.value_and_grad(loss)(params, "native")
        jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6),
                     got, want)
        print("thread_start: same values and gradients")
        os.environ["RNNJAX_NATIVE_TEST_FAULT"] = "worker"
        for name, run in (("forward", lambda: loss(params, "native")),
                          ("backward", lambda: jax.grad(loss)(params, "native"))):
            try:
                jax.block_until_ready(run())
                print("worker", name, "succeeded")
            except Exception as error:
                print("worker", name, "->", str(error).splitlines()[0])
        """
    )
    assert "thread_start: same values and gradients" in out
    errors = dict(line.split(" -> ", 1) for line in out.splitlines() if " -> " in line)
    assert sorted(errors) == ["worker backward", "worker forward"], out
    for error in errors.values():  # the backward pass's forward call fails first
        assert error.startswith("INTERNAL:") and "rnnjax_forward: std::bad_alloc" in error, out


def test_cgroup_cpu_quota(tmp_path):
    membership = tmp_path / "cgroup"
    membership.write_text("0::/job/step\n")
    (tmp_path / "job" / "step").mkdir(parents=True)
    (tmp_path / "job" / "step" / "cpu.max").write_text("max 100000\n")
    assert _native.cgroup_cpu_quota(str(tmp_path), str(membership)) is None
    (tmp_path / "job" / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs on a parent: 2
    assert _native.cgroup_cpu_quota(str(tmp_path), str(membership)) == 2
    membership.write_text("4:cpu,cpuacct:/\n")  # cgroup v1, the container's own root
    (tmp_path / "cpu,cpuacct").mkdir()
    (tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    assert _native.cgroup_cpu_quota(str(tmp_path), str(membership)) == 1
    (tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    assert _native.cgroup_cpu_quota(str(tmp_path), str(membership)) is None
    assert _native.cgroup_cpu_quota(str(tmp_path), str(tmp_path / "absent")) is None


# ---- a BLAS that does not load ----------------------------------------------------------------


@needs_native
def test_a_partial_mkl_falls_back_to_openblas_with_one_warning(tmp_path):
    if _native_loading.blas_addresses("openblas") is None:
        pytest.skip("OpenBLAS (scipy-openblas32) is not installed")
    import scipy_openblas32

    # A "libmkl_rt" without MKL's symbols: OpenBLAS under MKL's name.
    lib = pathlib.Path(scipy_openblas32.get_lib_dir()) / scipy_openblas32.get_library(True)
    (tmp_path / "libmkl_rt.so.2").symlink_to(lib)
    out = _isolated(
        f"""
        import warnings, jax, jax.numpy as jnp, rnnjax
        from rnnjax.recurrence.backends import _native, _native_loading
        _native_loading._library_dirs = lambda: [{str(tmp_path)!r}]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            layer = rnnjax.GRU(4)
            params = layer.init(jax.random.key(0), 3)
            for _ in range(2):
                out, _ = layer(params, jnp.ones((2, 5, 3)))
        print("blas:", _native.blas())
        print("warnings:", len(caught))
        print("warning:", caught[0].message)
        ref, _ = rnnjax.GRU(4, backend="scan")(params, jnp.ones((2, 5, 3)))
        print("max difference:", float(jnp.max(jnp.abs(out - ref))))
        """
    )
    assert "blas: openblas" in out and "warnings: 1" in out, out
    assert "warning: rnnjax: mkl is installed but does not load" in out, out
    assert "libmkl_rt.so.2 has no symbol cblas_sgemm" in out, out
    assert "the native backend uses openblas" in out, out
    assert float(out.split("max difference:")[1]) < 1e-5, out


# ---- NaN and inf ------------------------------------------------------------------------------


def _both(cell, params, xs, s0, lengths=None):
    """Values and gradients (params, xs, s0) of the native kernels and of the scan."""
    results = []
    for backend in ("native", "scan"):

        def loss(p, x, s, backend=backend):
            out, state = scan_time_major(cell, p, x, s, lengths, backend=backend)
            return jnp.sum(out * jnp.cos(jnp.arange(out.size, dtype=out.dtype)).reshape(out.shape))

        results.append(jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(params, xs, s0))
    return results


@needs_native
@pytest.mark.parametrize("name", CELLS)
def test_nan_and_inf_propagate_as_in_the_scan(name):
    cell = CELLS[name]
    k_params, k_x = jax.random.split(jax.random.key(0))
    params = cell.init(k_params, 3)
    # Example 0 meets a NaN at t = 1, example 1 +inf at t = 2, example 2 -inf at t = 3 (its
    # sign through W_ih differs per gate), example 3 stays finite.
    xs = jax.random.normal(k_x, (6, 4, 3))
    xs = xs.at[1, 0, 0].set(jnp.nan).at[2, 1, 1].set(jnp.inf).at[3, 2, 2].set(-jnp.inf)
    s0 = jax.tree.map(lambda s: jnp.zeros((4,) + s.shape), cell.initial_state())
    (got_value, got_grads), (want_value, want_grads) = _both(cell, params, xs, s0)
    assert np.isnan(got_value) and np.isnan(want_value)
    for got, want in zip(jax.tree.leaves(got_grads), jax.tree.leaves(want_grads), strict=True):
        got, want = np.asarray(got), np.asarray(want)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))  # the same NaNs
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)  # the rest (inf too) close
    assert np.isfinite(np.asarray(got_grads[1])[:, 3]).all()  # the finite example stays finite


@needs_native
def test_relu_keeps_nan_and_its_derivative_selects():
    # jax.nn.relu(NaN) = NaN (the kernels once gave 0), and its derivative at a NaN unit is 0 even
    # where the incoming cotangent is NaN (the kernels once gave 0 * NaN = NaN).
    cell = CELLS["rnn_relu"]
    params = cell.init(jax.random.key(3), 2)
    xs = jnp.ones((3, 1, 2)).at[1, 0, 0].set(jnp.nan)
    s0 = jnp.zeros((1, 5))
    outputs, _ = scan_time_major(cell, params, xs, s0, backend="native")
    assert np.isnan(np.asarray(outputs[1:])).all()
    (_, got), (_, want) = _both(cell, params, xs, s0)
    np.testing.assert_array_equal(np.isnan(got[1]), np.isnan(want[1]))
    assert not np.isnan(np.asarray(got[1][1:])).any()  # no NaN flows back through a NaN unit


@pytest.mark.parametrize("backend", ["scan", "fused", "native"])
def test_nan_and_inf_at_padded_positions_change_nothing(backend):
    if backend == "native" and not _native.available():
        pytest.skip(_native.unavailable_reason())
    layer = rnnjax.LSTM(4, bidirectional=True, backend=backend)
    params = layer.init(jax.random.key(0), 3)
    x = jax.random.normal(jax.random.key(1), (3, 6, 3))
    lengths = jnp.array([6, 2, 0])
    padding = jnp.arange(6)[None, :] >= lengths[:, None]
    poisoned = jnp.where(padding[..., None], jnp.array([jnp.nan, jnp.inf, -jnp.inf]), x)

    def loss(p, x):
        outputs, (h, c) = layer(p, x, lengths)
        return jnp.sum(jnp.sin(outputs)) + jnp.sum(h * c)

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    clean_value, (clean_params, clean_x) = grad(params, jnp.where(padding[..., None], 0.0, x))
    value, (d_params, d_x) = grad(params, poisoned)
    np.testing.assert_allclose(value, clean_value, rtol=1e-6)
    for got, want in zip(jax.tree.leaves(d_params), jax.tree.leaves(clean_params), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d_x, clean_x, rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(jnp.where(padding[..., None], d_x, 0.0)).max()) == 0.0


def test_unroll_zeroes_padded_inputs_too():
    cell = cells.GRUCell(4)
    params = cell.init(jax.random.key(0), 2)
    xs = jnp.ones((5, 2)).at[3:].set(jnp.nan)

    def loss(p, x):
        return jnp.sum(rnnjax.unroll(cell, p, x, length=3)[0])

    grads = jax.grad(loss, argnums=(0, 1))(params, xs)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))


# ---- derivatives the hand-written backward passes do not define -------------------------------


@pytest.mark.parametrize("backend", ["fused", "native"])
def test_forward_mode_and_second_order_errors_say_use_the_scan(backend):
    if backend == "native" and not _native.available():
        pytest.skip(_native.unavailable_reason())
    layer = rnnjax.GRU(4, backend=backend)
    params = layer.init(jax.random.key(0), 3)
    x = jnp.ones((2, 5, 3))
    with pytest.raises(ValueError, match=r"forward mode \(jax.jvp.*needs backend='scan'"):
        jax.jvp(lambda x: layer(params, x)[0], (x,), (x,))
    if backend == "native":  # the fused backward pass is plain JAX: its derivative exists
        inner = jax.grad(lambda x: jnp.sum(layer(params, x)[0]))
        with pytest.raises(ValueError, match=r"derivative of a gradient.*needs backend='scan'"):
            jax.grad(lambda x: jnp.sum(inner(x)))(x)
