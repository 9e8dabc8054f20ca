"""The native CPU backend: each direction of a layer as two compiled calls, forward and backward.

On XLA:CPU a ``lax.scan`` is a while loop of small thunks, and its dots with few columns (the
input projection, K = I) run far below the machine's matmul rate: rnnjax's scan and flax's
``nn.RNN`` trained at 80-120 GFLOP/s where torch's fused oneDNN LSTM reached 125-150
(``benchmarks/RESULTS.md``). ``backends/csrc`` runs the time loop in C++ as XLA FFI custom calls:

- every matmul goes to MKL (the ``mkl`` wheel, ``pip install 'rnnjax[mkl]'``), whose packed API
  prepares ``W_hh`` once per call for the T per-step products, or else to OpenBLAS (the
  ``scipy-openblas32`` wheel, a dependency); on AMD CPUs large problems to OpenBLAS, small ones
  too where the CPU has AVX-512 (``_native_loading``); ``blas()`` says which, ``use_blas`` switches;
- the hidden units are split over the cores (``threads_for``; ``RNNJAX_NATIVE_THREADS``
  overrides), so the gate math runs in parallel as well as the matmuls;
- what is not sequential runs as large matmuls over chunks of steps: the input projection
  before the steps, and in the backward pass ``dW_hh += H_prev^T dZ``, ``dW_ih += X^T dZ``,
  ``dX = dZ W_ih^T`` (the plan of the fused backend, ``backends._fused_vjp``, and of cuDNN).

It runs the built-in LSTM (with or without ``proj_size``), GRU (both resets) and Elman cells in
float32 on CPU, full or packed (``valid``) batches, either direction; and those cells under a
``MixedPrecisionCell`` policy of ``jnp.bfloat16``: the forward kernel rounds the operands of the
cell's two matmuls (``x @ W_ih``, ``h @ W_hh``) to bfloat16 and sums their products in float32, as
the policy defines, with rnnjax's own bf16 GEMM where the CPU has AVX512-BF16
(``csrc/bf16_kernel.h``; 2x float32's speed on a Zen 4 EPYC), MKL's on Intel CPUs with bf16 units
(AMX, AVX512-BF16) where MKL is installed, else with float32 GEMMs of the rounded values
(``bf16_mode``: the same numbers, as bf16 products are exact in float32); the scan also rounds each
product's result to bfloat16 (its dots' output dtype), so the two agree to bfloat16's precision,
not bitwise. The backward kernel differentiates the rounded forward pass with the rounding passed
straight through: the products of the two matmuls' transposes (the step's ``dh += dZ_t W_hh^T``,
the chunk's ``dW_hh = H^T dZ``, ``dW_ih = X^T dZ``, ``dX = dZ W_ih^T``) round both operands to
bfloat16 and sum in float32, as the forward does, where the scan's matmul cotangents are
bfloat16. The extension is built when the package is installed (``setup.py``); where it is
missing ``unavailable_reason()`` says why and AUTO keeps the scan. Forward-mode
differentiation (``jax.jvp``) and second derivatives are not defined for it (``_autodiff``: the
error says to pass ``backend="scan"``); under ``jax.vmap`` the calls run once per vmapped slice;
XLA does not partition a custom call, so under a data-parallel mesh (``jax.set_mesh``) the calls
run under ``jax.shard_map``, each device on its own rows of the batch (``_per_device``).

Shapes: T time, B batch, I input, H hidden, G gates, P the state's width (``proj_size``, else H).
Arrays are time-major.
"""

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.cells import Cell, ElmanCell, GRUCell, LSTMCell, LSTMState, MixedPrecisionCell
from rnnjax.recurrence.backends import _native_loading as _loading
from rnnjax.recurrence.backends._autodiff import forward_mode_hint, reverse_mode_only
from rnnjax.recurrence.backends._cpu_quota import allowed_cpus, cgroup_cpu_quota
from rnnjax.recurrence.backends._native_loading import (
    blas,
    has_bf16,
    unavailable_reason,
    use_blas,
)
from rnnjax.recurrence.backends._per_device import per_device

__all__ = [
    "allowed_cpus",
    "available",
    "blas",
    "bf16_mode",
    "cgroup_cpu_quota",
    "has_bf16",
    "native_recurrence",
    "supports",
    "threads_for",
    "unavailable_reason",
    "use_blas",
]


def threads_for(hidden_size: int, gates: int, batch: int) -> int:
    """Threads per kernel call: the CPUs this process may use (``allowed_cpus``;
    ``RNNJAX_NATIVE_THREADS`` overrides, up to that count), at most one per 32 hidden units, and
    one per 2**18 multiply-adds of the step's ``[B, H] @ [H, G*H]``: below that a step's barrier
    costs more than the second thread saves (an Elman layer of 8 x 128 ran 1.5x faster on one
    thread, an LSTM of that size 1.3x slower)."""
    cpus = allowed_cpus()
    override = os.environ.get("RNNJAX_NATIVE_THREADS")
    if override is not None:
        if not override.isdigit() or int(override) < 1:
            raise ValueError(f"RNNJAX_NATIVE_THREADS must be a positive integer, got {override!r}")
        return min(int(override), cpus)
    work = batch * gates * hidden_size * hidden_size
    return max(1, min(cpus, hidden_size // 32, work // 2**18))


def available() -> bool:
    """Whether the compiled extension and a BLAS load here."""
    return _loading.unavailable_reason() is None


def supports(cell: Cell) -> bool:
    """Whether the kernels compute exactly ``cell``'s step (subclasses may change it: no); a
    ``MixedPrecisionCell`` of such a cell with a bfloat16 (or float32) policy too."""
    inner, bf16 = _unwrap(cell)
    return (
        bf16 is not None
        and type(inner) in _GATES
        and (inner.one_state_matmul or _reset_before(inner) or _projected(inner))
    )


def bf16_mode() -> int:
    """How the forward kernel multiplies bfloat16 operands: 3, rnnjax's own AVX512-BF16 GEMM
    (``csrc/bf16_kernel.h``), where the CPU has AVX512-BF16 but for Intel CPUs with MKL's bf16
    GEMM, which has AMX and AVX512-BF16 code of its own; 2, MKL's bf16 GEMM, where MKL has it
    (``has_bf16``) and the CPU has bf16 units; else 1, float32 GEMMs of the rounded values
    (MKL's bf16 GEMM without such units, or on AMD CPUs, ran 0.85-1.09x the speed of its
    float32 one and made a streaming step 5x slower: it converts per call)."""
    mkl = has_bf16() and _loading.cpu_has_bf16_units()
    if _loading.bf16_kernel_runs() and not (mkl and _loading.cpu_vendor() == "GenuineIntel"):
        return 3
    return 2 if mkl else 1


def _unwrap(cell: Cell) -> tuple[Cell, bool | None]:
    """``(the cell the kernels compute, whether its matmul operands are rounded to bf16)``;
    ``(cell, None)`` for a precision policy the kernels do not compute (float16)."""
    if type(cell) is not MixedPrecisionCell:
        return cell, False
    dtype = jnp.dtype(cell.compute_dtype)
    if dtype == jnp.float32:  # the wrapped cell's own numbers
        return cell.cell, False
    return cell.cell, True if dtype == jnp.bfloat16 else None


def _projected(cell: Cell) -> bool:
    return type(cell) is LSTMCell and cell.fusable and cell.proj_size > 0


def _reset_before(cell: Cell) -> bool:
    return type(cell) is GRUCell and cell.fusable and not cell.reset_after


def native_recurrence(
    cell: Cell,
    params,
    xs,
    state0,
    valid=None,
    *,
    reverse: bool = False,
    batch_major: bool = False,
    remat: bool = False,
):
    """Runs ``cell`` over ``xs: [T, B, I]`` from ``state0`` (leaves ``[B, ...]``).

    Args:
      cell: an LSTM, a GRU or an Elman cell, or one under a bfloat16 ``MixedPrecisionCell``
        (``supports``).
      params: its ``CellParams``.
      xs: inputs ``[T, B, I]`` (``[B, T, I]`` with ``batch_major``); the kernels compute in
        float32 (other dtypes are cast).
      state0: the initial state, leaves ``[B, H]`` (a projected LSTM's hidden ``[B, P]``).
      valid: optional ``[T, B]`` booleans (time-major in either layout); a padded step keeps the
        state and outputs zeros.
      reverse: run from t = T-1 down to 0.
      batch_major: inputs and outputs are ``[B, T, F]``: the kernels read and write that layout
        themselves, which saves a batch-first layer two transposes each way (10% of an Elman
        layer's training step at 64x256x128x256).
      remat: keep the activations of one segment of about sqrt(T) steps at a time
        (``_checkpointed``): the backward pass reruns each segment's forward call first. Time-major
        only.

    Returns:
      ``(outputs [T, B, P] (or [B, T, P]), final_state)``, the values of the plain scan.
    """
    reason = _loading.unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"backend='native' cannot run: {reason}")
    cell, bf16 = _unwrap(cell)
    bf16 = bf16_mode() if bf16 else 0
    if valid is None:
        valid = jnp.ones(_steps_and_batch(xs, batch_major), jnp.uint8)
    # The kernels read float32; casting out here lets JAX cast the cotangents back.
    params, xs, state0 = jax.tree.map(lambda a: a.astype(jnp.float32), (params, xs, state0))
    if remat and batch_major:
        raise ValueError("remat runs time-major inputs [T, B, I]: pass batch_major=False")
    if remat:
        kernel = functools.partial(_checkpointed, cell, reverse, bf16)
    else:
        kernel = functools.partial(_recurrence, cell, reverse, batch_major, bf16)
    batched = (xs, state0, valid.astype(jnp.uint8))
    x_axis = 0 if batch_major else 1
    with forward_mode_hint("native"):
        return per_device(kernel, params, batched, batch_axes=(x_axis, 0, 1), out_axes=(x_axis, 0))


def segment_steps(steps: int) -> int:
    """Steps per recomputed segment with remat: about sqrt(T), so that the kept segment
    boundaries and one segment's activations take about the same memory; at least 64 steps (or
    all), so that each call's input projection stays a large matmul."""
    return min(steps, max(64, math.isqrt(max(steps - 1, 0)) + 1))


def _checkpointed(cell: Cell, reverse: bool, bf16: bool, params, xs, state0, valid):
    """``_recurrence`` over segments of ``segment_steps`` steps under ``jax.checkpoint``: the
    forward pass keeps the outputs and the state entering each segment; the backward pass reruns
    one segment's forward call (keeping its activations), then its backward call. Padding steps
    appended to fill the last segment are invalid: they carry the state and output zeros."""
    steps, batch, inputs = xs.shape
    size = max(segment_steps(steps), 1)
    count = -(-steps // size)
    pad = count * size - steps
    xs = jnp.pad(xs, ((0, pad), (0, 0), (0, 0))).reshape(count, size, batch, inputs)
    valid = jnp.pad(valid, ((0, pad), (0, 0))).reshape(count, size, batch)

    @jax.checkpoint
    def segment(state, x_and_valid):
        x, v = x_and_valid
        out, state = _recurrence(cell, reverse, False, bf16, params, x, state, v)
        return state, out

    final, outs = jax.lax.scan(segment, state0, (xs, valid), reverse=reverse)
    return outs.reshape(count * size, batch, cell.output_size)[:steps], final


# The cells the kernels compute, with their gate counts.
_GATES = {LSTMCell: 4, GRUCell: 3, ElmanCell: 1}


def _kind(cell: Cell) -> np.int32:
    if isinstance(cell, ElmanCell):
        return np.int32(3 if cell.nonlinearity == "relu" else 2)
    if _reset_before(cell):
        return np.int32(4)
    return np.int32(0 if isinstance(cell, LSTMCell) else 1)


def _kernel_params(cell: Cell, params):
    """What the kernels read: ``(w_ih, bias, w_hh, w_hr, b_hn)``; ``bias`` is the input
    projection's, ``w_hr`` the LSTM's output projection (``[0, 0]`` where there is none)."""
    # The cell's folded bias: its projection of no input. An empty contraction, which XLA
    # reduces to zeros: a real product of zeros would cost a matmul (30-60 us for one step).
    no_input = params._replace(w_ih=jnp.zeros((0, params.w_ih.shape[1]), params.w_ih.dtype))
    bias = cell.project_inputs(no_input, jnp.zeros((0,), params.w_ih.dtype))
    hidden = cell.hidden_size
    if _reset_after(cell) and params.b_hh is not None:
        b_hn = params.b_hh[2 * hidden :]
    else:  # reset-before folds b_hn into the projection's bias
        b_hn = jnp.zeros((hidden,), params.w_ih.dtype)
    # Reset-before's recurrent_weight is its r and z blocks: the kernels read W_hn too.
    w_hh = params.w_hh if _reset_before(cell) else cell.recurrent_weight(params)
    w_hr = params.w_hr if _projected(cell) else jnp.zeros((0, 0), params.w_ih.dtype)
    return params.w_ih, bias, w_hh, w_hr, b_hn


def _reset_after(cell: Cell) -> bool:
    return isinstance(cell, GRUCell) and cell.reset_after


def _threads(cell: Cell, batch: int) -> np.int32:
    gates = _GATES[type(cell)]
    return np.int32(threads_for(cell.hidden_size, gates, batch))


def _blas_table(cell: Cell, batch: int) -> np.int32:
    """Which of the loaded BLAS tables the call uses (``_native_loading.blas_table``), by the
    multiply-adds of its step's ``[B, P] @ [P, G*H]``."""
    work = batch * _GATES[type(cell)] * cell.hidden_size * cell.output_size
    return np.int32(_loading.blas_table(work))


def _steps_and_batch(xs, batch_major: bool) -> tuple[int, int]:
    """``(T, B)`` of inputs ``[T, B, I]``, or ``[B, T, I]`` with ``batch_major``."""
    return tuple(xs.shape[1::-1]) if batch_major else tuple(xs.shape[:2])


def _f32(*shapes):
    return [jax.ShapeDtypeStruct(shape, jnp.float32) for shape in shapes]


def _forward(cell, reverse, batch_major, bf16, params, xs, state0, valid, keep: bool):
    """The forward call: ``(outputs, final_state, residuals)``; residuals are empty unless keep."""
    steps, batch = _steps_and_batch(xs, batch_major)
    hidden, width = cell.hidden_size, cell.output_size
    lstm = isinstance(cell, LSTMCell)
    h0, c0 = (state0.hidden, state0.cell) if lstm else (state0, jnp.zeros((0,), jnp.float32))
    # An Elman layer's backward pass reads its outputs as its activations: none kept apart.
    acts = 3 if _reset_before(cell) else (4 if isinstance(cell, LSTMCell | GRUCell) else 0)
    kept = steps if keep else 0  # zero-size outputs when no backward pass follows
    results = _f32(
        (batch, steps, width) if batch_major else (steps, batch, width),
        (batch, width),
        (batch, hidden) if lstm else (0,),
        (kept, batch, acts * hidden),
        (kept if lstm else 0, batch, hidden),
    )
    kernel = jax.ffi.ffi_call("rnnjax_forward", results, vmap_method="sequential")
    attributes = dict(
        kind=_kind(cell),
        reverse=reverse,
        keep=keep,
        batch_major=batch_major,
        threads=_threads(cell, batch),
        bf16=np.int32(bf16),
        blas=_blas_table(cell, batch),
    )
    call = reverse_mode_only(lambda *arrays: kernel(*arrays, **attributes), "native")
    out, h, c, *residuals = call(xs, *_kernel_params(cell, params), h0, c0, valid)
    return out, LSTMState(h, c) if lstm else h, residuals


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _recurrence(cell, reverse, batch_major, bf16, params, xs, state0, valid):
    out, final, _ = _forward(cell, reverse, batch_major, bf16, params, xs, state0, valid, False)
    return out, final


def _recurrence_fwd(cell, reverse, batch_major, bf16, params, xs, state0, valid):
    # symbolic_zeros: every argument leaf comes as CustomVJPPrimal(value, perturbed). Inputs
    # that carry no derivative (the data entering a first layer) need no input gradient, a
    # tenth of an Elman layer's backward work.
    need_dx = xs.perturbed
    params, xs, state0, valid = jax.tree.map(
        lambda leaf: leaf.value, (params, xs, state0, valid), is_leaf=_is_primal
    )
    out, final, residuals = _forward(
        cell, reverse, batch_major, bf16, params, xs, state0, valid, keep=True
    )
    if isinstance(cell, ElmanCell):
        residuals[0] = out
    # The backward kernel rebuilds the states entering each step from the outputs and h0.
    h0 = state0.hidden if isinstance(cell, LSTMCell) else state0
    return (out, final), (params, xs, valid, (*residuals, out, h0), need_dx)


def _is_primal(leaf) -> bool:
    return isinstance(leaf, jax.custom_derivatives.CustomVJPPrimal)


def _materialize(cotangent):
    """A cotangent JAX passes as a symbolic zero (an output nobody reads), as an array."""
    if isinstance(cotangent, jax.custom_derivatives.SymbolicZero):
        return jnp.zeros(cotangent.shape, cotangent.dtype)
    return cotangent


def _recurrence_bwd(cell, reverse, batch_major, bf16, residuals, cotangents):
    params, xs, valid, (acts, prev_c, out, h0), need_dx = residuals
    batch = _steps_and_batch(xs, batch_major)[1]
    d_out, d_final = jax.tree.map(
        _materialize,
        cotangents,
        is_leaf=lambda c: isinstance(c, jax.custom_derivatives.SymbolicZero),
    )
    lstm = isinstance(cell, LSTMCell)
    dh, dc = (d_final.hidden, d_final.cell) if lstm else (d_final, jnp.zeros((0,), jnp.float32))
    kernel_params, params_vjp = jax.vjp(lambda p: _kernel_params(cell, p), params)
    w_ih, bias, w_hh, w_hr, _ = kernel_params
    hidden = cell.hidden_size
    dx_shape = xs.shape if need_dx else (0,)
    results = _f32(
        dx_shape, w_ih.shape, w_hh.shape, w_hr.shape, bias.shape, bias.shape, dh.shape, dc.shape
    )
    kernel = jax.ffi.ffi_call("rnnjax_backward", results, vmap_method="sequential")
    attributes = dict(
        kind=_kind(cell),
        reverse=reverse,
        need_dx=need_dx,
        batch_major=batch_major,
        threads=_threads(cell, batch),
        bf16=np.int32(bf16),
        blas=_blas_table(cell, batch),
    )
    call = reverse_mode_only(lambda *arrays: kernel(*arrays, **attributes), "native")
    dx, dw_ih, dw_hh, dw_hr, db_proj, db_hw, dh0, dc0 = call(
        xs, w_ih, w_hh, w_hr, acts, out, h0, prev_c, valid, d_out, dh, dc
    )
    d_b_hn = db_hw[2 * hidden :] if _reset_after(cell) else jnp.zeros((hidden,), jnp.float32)
    (d_params,) = params_vjp((dw_ih, db_proj, dw_hh, dw_hr, d_b_hn))
    d_state0 = LSTMState(dh0, dc0) if lstm else dh0
    return d_params, dx if need_dx else None, d_state0, np.zeros(valid.shape, jax.dtypes.float0)


_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd, symbolic_zeros=True)
