"""The native CPU backend (``recurrence/backends/_native.py``, compiled C++ loop) against the scan.

Its forward and backward passes are written by hand in C++ (gate math, its VJP, the chunked weight
and input gradients, the split of the hidden units over threads), so values and gradients w.r.t.
parameters, inputs and initial states are compared with JAX's derivative of the scan: every cell
kind (the projected LSTM too), both directions, padded batches (with empty and full sequences),
batches large enough that the kernels work in several chunks of steps, 1 to 3 threads (3 splits 5
units unevenly, 8 leaves threads without units), both BLAS libraries, stacks, and a float64
reference loop.
"""

import functools
import os
import shutil
import subprocess
import sys

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import cells
from rnnjax.recurrence._unroll import native_batch_major, scan_time_major
from rnnjax.recurrence.backends import Backend, _native, _native_loading, resolve_layer
from tests import reference

needs_native = pytest.mark.skipif(
    not _native.available() or jax.default_backend() != "cpu",
    reason=f"the native backend runs on CPU: {_native.unavailable_reason() or 'JAX is not on CPU'}",
)

CELLS = {
    "lstm": cells.LSTMCell(5),
    "lstm_nobias": cells.LSTMCell(5, bias=False),
    "lstm_proj": cells.LSTMCell(5, proj_size=3),
    "gru": cells.GRUCell(5),
    "gru_nobias": cells.GRUCell(5, bias=False),
    "gru_reset_before": cells.GRUCell(5, reset_after=False),
    "gru_reset_before_nobias": cells.GRUCell(5, reset_after=False, bias=False),
    "rnn_tanh": cells.ElmanCell(5),
    "rnn_relu": cells.ElmanCell(5, "relu"),
}


def test_extension_is_built_where_a_compiler_is():
    # The extension is optional at install time; where a C++ compiler exists (CI, most Linux
    # machines) it must have been built, or the layers would silently run the slower scan.
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler: the package installs without the native backend")
    assert _native.available(), _native.unavailable_reason()


BLAS = [name for name in ("mkl", "openblas") if _native_loading.blas_addresses(name) is not None]


@pytest.fixture
def many_cpus(monkeypatch):
    """Lets RNNJAX_NATIVE_THREADS ask for more threads than this machine's CPUs (it is capped at
    ``allowed_cpus``): uneven splits and threads without units are tested on any machine."""
    monkeypatch.setattr(_native, "allowed_cpus", lambda: 64)


def _loss(run, params, xs, s0):
    outputs, state = run(params, xs, s0)
    # Weights that differ per position and per state leaf, so every cotangent path is exercised.
    weights = jnp.cos(jnp.arange(outputs.size, dtype=outputs.dtype)).reshape(outputs.shape)
    return jnp.sum(jnp.sin(outputs) * weights) + sum(
        jnp.sum(jnp.cos(s)) for s in jax.tree.leaves(state)
    )


def _problem(cell, steps, batch, inputs=3, seed=0):
    k_params, k_x, k_s = jax.random.split(jax.random.key(seed), 3)
    params = cell.init(k_params, inputs)
    xs = jax.random.normal(k_x, (steps, batch, inputs))
    s0 = jax.tree.map(
        lambda s: 0.5 * jax.random.normal(k_s, (batch,) + s.shape), cell.initial_state()
    )
    return params, xs, s0


def _results(backend, cell, params, xs, s0, lengths, reverse, batch_major=False, remat=False):
    """Values, and the loss's value and gradients, of ``backend`` ("native" or "scan"); with
    ``batch_major`` the kernels read ``[B, T, I]`` and write ``[B, T, H]`` themselves, with
    ``remat`` they run in recomputed segments."""

    def run(p, x, s):
        if batch_major and backend == "native":
            x = jnp.swapaxes(x, 0, 1)  # outside the kernels: their layout is batch-major
            out, state = native_batch_major(cell, p, x, s, lengths, reverse=reverse)
            return jnp.swapaxes(out, 0, 1), state
        native_remat = remat and backend == "native"
        return scan_time_major(
            cell, p, x, s, lengths, reverse=reverse, remat=native_remat, backend=backend
        )

    grad = jax.jit(jax.value_and_grad(lambda *a: _loss(run, *a), argnums=(0, 1, 2)))
    return run(params, xs, s0), grad(params, xs, s0)


def _both(*problem, **options):
    """``_results`` of the native kernels and of the plain scan, for the same loss."""
    return [_results(backend, *problem, **options) for backend in ("native", "scan")]


def _assert_close(got, want, rtol=2e-5, atol=2e-6):
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=rtol, atol=atol), got, want)


# The five kinds with kernel code of their own; the bias-free and ReLU twins run the same code
# with zero biases or another activation.
_ALL_KINDS = ("lstm", "lstm_proj", "gru", "gru_reset_before", "rnn_tanh")


# Reversed runs padded only: their lengths include a full-length row. The twins: the padded
# forward run only.
KERNEL_CASES = [
    (name, reverse, padded)
    for name in CELLS
    for reverse, padded in [(False, False), (False, True), (True, True)]
    if name in _ALL_KINDS or (reverse, padded) == (False, True)
]


@needs_native
@pytest.mark.parametrize("name, reverse, padded", KERNEL_CASES)
def test_kernels_match_scan(name, reverse, padded, monkeypatch, many_cpus):
    cell = CELLS[name]
    problem = (cell, *_problem(cell, steps=6, batch=4))
    lengths = jnp.array([6, 0, 2, 5]) if padded else None
    want = _results("scan", *problem, lengths, reverse)
    for threads in ("2", "8"):
        monkeypatch.setenv("RNNJAX_NATIVE_THREADS", threads)
        _assert_close(_results("native", *problem, lengths, reverse), want)


@needs_native
@pytest.mark.parametrize("name", _ALL_KINDS)
def test_batch_major_kernels_match_scan(name, monkeypatch, many_cpus):
    # One thread and 6 steps: the kernels read the weights in place, unpacked (short calls).
    monkeypatch.setenv("RNNJAX_NATIVE_THREADS", "1")
    cell = CELLS[name]
    params, xs, s0 = _problem(cell, steps=6, batch=4)
    for lengths in (None, jnp.array([6, 0, 2, 5])):
        for reverse in (False, True):
            got, want = _both(cell, params, xs, s0, lengths, reverse, batch_major=True)
            _assert_close(got, want)


# Every kernel on the first BLAS; on the second (OpenBLAS, whose products are not packed) the
# kernels with two products per step, which run the same row code as the others.
CHUNK_CASES = [(name, b) for b in BLAS[:1] for name in _ALL_KINDS] + [
    (name, b) for b in BLAS[1:] for name in ("lstm_proj", "gru_reset_before")
]


@needs_native
@pytest.mark.parametrize("name, blas_name", CHUNK_CASES)
def test_several_chunks_of_steps(name, blas_name, monkeypatch, many_cpus):
    _native.use_blas(blas_name)
    try:
        _check_several_chunks(name, monkeypatch)
    finally:
        _native.use_blas("auto")


def _check_several_chunks(name, monkeypatch):
    # 512 // 160 = 3 steps per chunk: 11 steps are chunks of 3, 3, 3 and 2, in both directions;
    # 1 and 3 threads, time- and batch-major.
    cell = CELLS[name]
    problem = (cell, *_problem(cell, steps=11, batch=160))
    lengths = jnp.asarray(np.random.default_rng(0).integers(0, 12, 160))
    for reverse in (False, True):
        want = _results("scan", *problem, lengths, reverse)
        for threads, batch_major in [("1", False), ("1", True), ("3", False), ("3", True)]:
            monkeypatch.setenv("RNNJAX_NATIVE_THREADS", threads)
            got = _results("native", *problem, lengths, reverse, batch_major)
            # Gradients sum over 1760 rows: compare them relative to their scale.
            _assert_close(got[0], want[0])
            for g, w in zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1]), strict=True):
                scale = float(jnp.max(jnp.abs(w)))
                np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * scale)


# Rows of 1024 floats (4 KiB) per thread: the kernels copy the weights with padded rows
# (kernel_shape.h, PaddedStride) once a call has 8 steps or more; one thread holds every unit.
PADDED_ROW_CELLS = {
    "lstm": cells.LSTMCell(256),
    "lstm_proj": cells.LSTMCell(256, proj_size=16),
    "gru_reset_before": cells.GRUCell(1024, reset_after=False),
}


@needs_native
@pytest.mark.parametrize("name", PADDED_ROW_CELLS)
def test_weights_with_padded_rows(name, monkeypatch):
    monkeypatch.setenv("RNNJAX_NATIVE_THREADS", "1")
    cell = PADDED_ROW_CELLS[name]
    params, xs, s0 = _problem(cell, steps=9, batch=2)
    got, want = _both(cell, params, xs, s0, jnp.array([9, 4]), False)
    _assert_close(got[0], want[0])
    for g, w in zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1]), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(w))))


@needs_native
@pytest.mark.parametrize(
    "name, segment",
    [("lstm", 3), ("lstm_proj", 3), ("gru_reset_before", 3), ("rnn_relu", 3), ("gru", 64)],
)
def test_remat_matches_scan(name, segment, monkeypatch):
    # 11 steps in segments of 3 (the last one padded by 1) or in one segment of 64 (53 padding
    # steps), both directions, with padded examples: values and gradients of the plain scan.
    monkeypatch.setattr(_native, "segment_steps", lambda steps: segment)
    cell = CELLS[name]
    params, xs, s0 = _problem(cell, steps=11, batch=3)
    for reverse in (False, True):
        got, want = _both(cell, params, xs, s0, jnp.array([11, 4, 0]), reverse, remat=True)
        _assert_close(got, want)


@needs_native
def test_remat_keeps_one_segment_of_activations():
    # The compiler's own accounting of a training step at T=4096: without remat the kernels keep
    # 5 floats per unit and step (1.3 MB per 1000 steps here); with it, the segment boundaries
    # and one segment's activations. Both keep the outputs (4 MB).
    assert _native.segment_steps(4096) == 64 and _native.segment_steps(16385) == 129
    assert _native.segment_steps(100) == 64
    assert _native.segment_steps(10) == 10
    cell = cells.LSTMCell(64)
    params, xs, s0 = _problem(cell, steps=4096, batch=4, inputs=8)

    def temp_bytes(remat):
        def loss(p):
            outputs, _ = scan_time_major(cell, p, xs, s0, remat=remat, backend="native")
            return jnp.sum(outputs**2)

        compiled = jax.jit(jax.grad(loss)).lower(params).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    plain, remat = temp_bytes(False), temp_bytes(True)
    assert plain > 4096 * 4 * 64 * 4 * 5  # the outputs and the kept activations
    assert remat < 0.35 * plain, (remat, plain)


def _backward_dx_shapes(grad_fn, *args):
    """The shape of the dx result of every native backward call in ``grad_fn``'s jaxpr."""
    shapes = []

    def visit(jaxpr):
        for eqn in jaxpr.eqns:
            if "rnnjax_backward" in str(eqn.params.get("target_name", "")):
                shapes.append(eqn.outvars[0].aval.shape)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                visit(sub)

    visit(jax.make_jaxpr(grad_fn)(*args).jaxpr)
    return shapes


@needs_native
# LSTM and GRU: the backward kernel's dx reads the projection's cotangent, which the GRU keeps
# apart from the recurrent one; the choice of dx itself is the same code for every kind.
@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_gradients_of_some_arguments_skip_the_input_gradient(name):
    # The backward kernel computes dx only where the inputs carry a derivative (custom VJP with
    # symbolic zeros); the other gradients, and those where an output is unused (a symbolic zero
    # cotangent), equal the scan's.
    cell = CELLS[name]
    params, xs, s0 = _problem(cell, steps=7, batch=3)
    lengths = jnp.array([7, 3, 0])

    def loss(backend, params, xs, s0, final_only=False):
        outputs, state = scan_time_major(cell, params, xs, s0, lengths, backend=backend)
        leaves = jax.tree.leaves(state) if final_only else [outputs]
        return sum(
            jnp.sum(jnp.sin(leaf) * (1.0 + jnp.arange(leaf.size).reshape(leaf.shape)))
            for leaf in leaves
        )

    for argnums, final_only in [(0, False), (2, False), ((0, 2), True), ((0, 1), False)]:
        native = jax.grad(functools.partial(loss, "native", final_only=final_only), argnums)
        scan = jax.grad(functools.partial(loss, "scan", final_only=final_only), argnums)
        _assert_close(jax.jit(native)(params, xs, s0), scan(params, xs, s0), rtol=5e-5, atol=5e-6)
        want_dx = (xs.shape,) if argnums == (0, 1) else ((0,),)
        assert _backward_dx_shapes(native, params, xs, s0) == list(want_dx)


@needs_native
@pytest.mark.parametrize("proj_size", [0, 4])
def test_gate_math_against_float64_loop(proj_size):
    # The kernels' own exp/tanh/sigmoid against a plain float64 loop, over saturating inputs.
    cell = cells.LSTMCell(6, proj_size=proj_size)
    params, xs, s0 = _problem(cell, steps=9, batch=3)
    xs = 8.0 * xs  # drives gates into saturation, where the approximations are tested hardest
    outputs, state = _native.native_recurrence(cell, params, xs, s0)
    for b in range(xs.shape[1]):
        s0_b = (np.asarray(s0.hidden[b], np.float64), np.asarray(s0.cell[b], np.float64))
        want_out, (want_h, want_c) = reference.run_sequence(cell, params, xs[:, b], s0_b)
        np.testing.assert_allclose(outputs[:, b], want_out, rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(state.hidden[b], want_h, rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(state.cell[b], want_c, rtol=1e-5, atol=2e-6)


@needs_native
@pytest.mark.parametrize(
    "layer",
    [
        rnnjax.LSTM,
        rnnjax.GRU,
        rnnjax.RNN,
        functools.partial(rnnjax.GRU, reset_after=False, remat=True),
        functools.partial(rnnjax.LSTM, proj_size=2),
    ],
)
def test_layer_stack_matches_scan(layer):
    options = dict(num_layers=2, bidirectional=True)
    native, scan = layer(5, backend="native", **options), layer(5, backend="scan", **options)
    k_params, k_x = jax.random.split(jax.random.key(1))
    params = scan.init(k_params, 3)
    x = jax.random.normal(k_x, (4, 7, 3))
    lengths = jnp.array([7, 1, 0, 4])
    results = []
    for model in (native, scan):

        def loss(p, x, m=model):
            return jnp.sum(jnp.tanh(m(p, x, lengths)[0]) ** 2)

        results.append(jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x))
    _assert_close(results[0], results[1])


@needs_native
def test_jit_vmap_and_streaming_agree():
    # vmap over an ensemble axis runs the kernels once per member (vmap_method="sequential").
    layer = rnnjax.GRU(4, backend="native")
    keys = jax.random.split(jax.random.key(2), 3)
    params = jax.vmap(lambda k: layer.init(k, 3))(keys)
    x = jax.random.normal(jax.random.key(3), (2, 5, 3))
    got = jax.jit(jax.vmap(lambda p: layer(p, x)[0]))(params)
    scan = rnnjax.GRU(4, backend="scan")
    want = jax.vmap(lambda p: scan(p, x)[0])(params)
    _assert_close(got, want)


@needs_native
def test_auto_resolution_on_cpu():
    lstm = cells.LSTMCell(4)
    assert resolve_layer("auto", lstm, platform="cpu") is Backend.NATIVE
    assert resolve_layer("auto", cells.GRUCell(4), platform="cpu") is Backend.NATIVE
    assert resolve_layer("auto", cells.ElmanCell(4, "relu"), platform="cpu") is Backend.NATIVE
    # What the kernels do not compute goes to the scan.
    assert resolve_layer("auto", lstm, remat=True, platform="cpu") is Backend.NATIVE
    assert resolve_layer("auto", lstm, dtype=jnp.float64, platform="cpu") is Backend.SCAN
    for cell in (cells.GRUCell(4, reset_after=False), cells.LSTMCell(4, proj_size=2)):
        assert resolve_layer("auto", cell, platform="cpu") is Backend.NATIVE
    assert resolve_layer("auto", cells.MGUCell(4), platform="cpu") is Backend.SCAN

    class Peephole(cells.LSTMCell):  # a subclass may change the step: never assumed
        pass

    assert resolve_layer("auto", Peephole(4), platform="cpu") is Backend.SCAN
    assert resolve_layer("auto", lstm, platform="gpu") is Backend.FUSED


@needs_native
def test_dtypes():
    # bfloat16 parameters with float32 inputs: the scan computes in float32, and so do the
    # kernels (AUTO picks them); the gradients come back in the parameters' dtype.
    layer = rnnjax.GRU(6)
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), layer.init(jax.random.key(4), 3))
    x = jax.random.normal(jax.random.key(5), (2, 4, 3))
    results = []
    for backend in ("auto", "scan"):
        model = rnnjax.GRU(6, backend=backend)
        results.append(jax.value_and_grad(lambda p, m=model: jnp.sum(m(p, x)[0] ** 2))(params))
    _assert_close(results[0][0], results[1][0])
    assert all(g.dtype == jnp.bfloat16 for g in jax.tree.leaves(results[0][1]))


@needs_native
def test_empty_batch_and_sequence():
    cell = CELLS["lstm"]
    for steps, batch in ((0, 3), (4, 0)):
        params, xs, s0 = _problem(cell, steps=steps, batch=batch)
        got, want = _both(cell, params, xs, s0, None, False)
        _assert_close(got, want)


def test_blas_order_and_the_blas_by_problem_size_on_amd(monkeypatch):
    monkeypatch.delenv("RNNJAX_NATIVE_BLAS", raising=False)
    assert _native_loading.preferred_order() == ("mkl", "openblas")
    openblas = "openblas" if _native_loading.blas_addresses("openblas") is not None else "mkl"
    for vendor, flags, want in (
        ("AuthenticAMD", ["avx2", "fma"], ("mkl", openblas)),
        ("AuthenticAMD", ["avx2", "avx512f"], (openblas, openblas)),
        ("GenuineIntel", ["avx2", "avx512f"], ("mkl", "mkl")),
    ):
        monkeypatch.setattr(_native_loading, "cpu_vendor", lambda vendor=vendor: vendor)
        monkeypatch.setattr(_native_loading, "_cpu_flags", lambda flags=flags: flags)
        assert _native_loading._by_problem_size("mkl") == want, (vendor, flags)
        assert _native_loading._by_problem_size("openblas") == ("openblas", "openblas")
    monkeypatch.setenv("RNNJAX_NATIVE_BLAS", "mkl")  # a BLAS asked for runs every problem
    assert _native_loading.preferred_order() == ("mkl", "openblas")
    assert _native_loading._by_problem_size("mkl") == ("mkl", "mkl")
    monkeypatch.setenv("RNNJAX_NATIVE_BLAS", "atlas")
    with pytest.raises(ValueError, match="RNNJAX_NATIVE_BLAS must be one of.*got 'atlas'"):
        _native_loading.preferred_order()
    # Table 1 from 2**22 multiply-adds per step: 64x256x128x256 and up, not 8x1024x64x128.
    assert _native_loading.blas_table(64 * 3 * 256 * 256) == 1
    assert _native_loading.blas_table(8 * 4 * 128 * 128) == 0


@needs_native
def test_threads_setting(monkeypatch):
    monkeypatch.delenv("RNNJAX_NATIVE_THREADS", raising=False)
    cpus = _native.allowed_cpus()
    assert 1 <= cpus <= len(os.sched_getaffinity(0))
    assert _native.threads_for(8, 4, 4096) == 1  # at most one thread per 32 units
    assert _native.threads_for(128, 1, 8) == 1  # too little work per step to share
    assert _native.threads_for(1024, 4, 64) == min(cpus, 32)
    monkeypatch.setattr(_native, "allowed_cpus", lambda: 3)
    monkeypatch.setenv("RNNJAX_NATIVE_THREADS", "64")  # more threads than CPUs: capped
    assert _native.threads_for(8, 4, 8) == 3
    monkeypatch.setenv("RNNJAX_NATIVE_THREADS", "two")
    with pytest.raises(ValueError, match="RNNJAX_NATIVE_THREADS must be a positive integer"):
        _native.threads_for(8, 4, 8)


@needs_native
def test_refusals_name_the_problem():
    with pytest.raises(ValueError, match="runs the built-in LSTMCell, GRUCell and ElmanCell"):
        resolve_layer("native", cells.MGUCell(4), platform="cpu")
    with pytest.raises(ValueError, match="runs float32 inputs, got float16"):
        resolve_layer("native", cells.GRUCell(4), dtype=jnp.float16, platform="cpu")
    with pytest.raises(ValueError, match="runs on CPU, but JAX runs on 'gpu'"):
        resolve_layer("native", cells.GRUCell(4), platform="gpu")
    with pytest.raises(ValueError, match="runs whole batches"):
        rnnjax.unroll(cells.GRUCell(4), None, jnp.zeros((3, 2)), backend="native")
    with pytest.raises(ValueError, match="blas must be one of"):
        _native.use_blas("atlas")


# Run in a fresh process with a fixed mmap threshold, so that the output is a fresh mapping: in a
# long-lived process glibc may serve it from heap pages already faulted in, which advice cannot
# turn into huge pages any more.
_HUGE_PAGES_PROBE = """
import re, jax, rnnjax
layer = rnnjax.RNN(512, backend="native")
params = layer.init(jax.random.key(0), 8)
x = jax.random.normal(jax.random.key(1), (16, 512, 8))
out = jax.block_until_ready(jax.jit(lambda p, x: layer(p, x)[0])(params, x))
address, size, huge, inside = out.unsafe_buffer_pointer(), out.nbytes, 0, False
with open("/proc/self/smaps") as smaps:
    for line in smaps:
        if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
            start, end = (int(v, 16) for v in line.split()[0].split("-"))
            inside = start < address + size and address < end
        elif inside and line.startswith("AnonHugePages:"):
            huge += int(line.split()[1])
want = rnnjax.RNN(512, backend="scan")(params, x[:2, :64])[0]
print(size, huge, float(abs(out[:2, :64] - want).max()))
"""


def _transparent_huge_pages() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        return "absent"


@needs_native
@pytest.mark.skipif(
    _transparent_huge_pages() != "madvise",
    reason="only where transparent huge pages are given on advice ('madvise') does it show",
)
def test_large_inference_outputs_are_advised_huge_pages():
    # A 16 MiB output is written on 2 MiB pages (csrc/huge_pages.h): its mapping holds at least
    # the whole huge pages inside the buffer.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(1 << 20), JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", _HUGE_PAGES_PROBE], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    size, huge_kib, difference = result.stdout.split()
    assert int(size) == 16 << 20 and int(huge_kib) >= 14 << 10, result.stdout
    assert float(difference) < 1e-5, result.stdout
