"""Backends of the recurrence: one enum, one resolver, each backend tested against the plain scan.

``SCAN`` is ``lax.scan`` over the cell's step, differentiated by JAX: it runs every cell and
option. ``FUSED`` (``backends._fused_vjp``) has a hand-written backward pass whose weight gradients
are large matmuls after the loop; it needs a fusable cell (``Cell.fusable``). ``NATIVE``
(``backends._native``) runs the time loop of a layer's direction as compiled C++ with OpenBLAS
matmuls, on CPU, for the built-in LSTM, GRU and Elman cells in float32, also under a bfloat16
``MixedPrecisionCell``. ``CUDNN``
(``backends._cudnn``) runs a whole LSTM layer as cuDNN's fused kernel on a GPU. ``ASSOCIATIVE``
(``backends._associative``) runs a cell with a linear recurrence (``rnnjax.cells.LinearCell``:
minGRU, minLSTM, LRU) as one parallel prefix scan. ``NEWTON`` (``backends._newton``, DEER and
quasi-DEER) solves for all states of any differentiable cell at once by Newton iterations; pass
``backends.Newton(tol=..., max_iters=..., quasi=...)`` for its options.

``AUTO`` picks what ``benchmarks/RESULTS.md`` measured fastest on the platform at hand:
- Linear cells: ASSOCIATIVE everywhere. NEWTON is never picked: whether it pays depends on T, H,
  the device and how fast the iterations converge (``benchmarks/parallel_time.py``).
- CPU: NATIVE for a layer whose cell, dtype and options it runs (and where the extension is
  built), else SCAN. FUSED trained 1.2-1.3x slower than SCAN there: its backward loop (the
  pointwise VJP rerun per step, the saved states read back) costs more than the per-step
  weight-gradient matmuls it removes.
- GPU: FUSED where the cell allows it, else SCAN. On an H200 the fused LSTM training step beat
  the scan by 1.6-2x and cuDNN (through torch or ``jax.experimental.rnn``) by 5-10%, so CUDNN
  is never chosen automatically; it stays available by name, for full-length batches.
"""

import enum

import jax
import jax.numpy as jnp

from rnnjax.cells import Cell, LinearCell
from rnnjax.recurrence.backends import _cudnn, _native
from rnnjax.recurrence.backends._associative import check_linear
from rnnjax.recurrence.backends._newton import Newton


class Backend(enum.Enum):
    """How a layer runs its recurrence; pass the member or its value (``"auto"``, ...)."""

    AUTO = "auto"
    SCAN = "scan"
    FUSED = "fused"
    NATIVE = "native"
    CUDNN = "cudnn"
    ASSOCIATIVE = "associative"
    NEWTON = "newton"


def _parse(backend) -> Backend:
    if isinstance(backend, Newton):  # the NEWTON backend with its options
        return Backend.NEWTON
    try:
        return Backend(backend)
    except ValueError:
        names = [b.value for b in Backend]
        raise ValueError(f"backend must be one of {names}, got {backend!r}") from None


def _check_fusable(cell: Cell) -> None:
    if not cell.fusable:
        raise ValueError(
            "backend='fused' needs a fusable cell (built-in LSTM, GRU, Elman, MGU, LayerNorm "
            f"LSTM/GRU, peephole LSTM), got {cell!r}"
        )


def resolve(backend: "Backend | str", cell: Cell, *, platform: str | None = None) -> Backend:
    """SCAN or FUSED for one direction of ``cell`` (``rnnjax.unroll``, ``scan_time_major``).

    Args:
      backend: a ``Backend`` or its value; CUDNN and NATIVE are refused (they run whole
        batches: use a layer).
      cell: the cell to run.
      platform: ``jax.default_backend()`` when None.

    Returns:
      ``Backend.SCAN``, ``Backend.FUSED``, ``Backend.ASSOCIATIVE`` or ``Backend.NEWTON``.
    """
    backend = _parse(backend)
    if backend in (Backend.CUDNN, Backend.NATIVE):
        raise ValueError(
            f"backend={backend.value!r} runs whole batches: use a layer, e.g. "
            f"rnnjax.LSTM(..., backend={backend.value!r}), not rnnjax.unroll"
        )
    if backend is Backend.AUTO:
        if isinstance(cell, LinearCell):  # O(log T) depth for the same values
            return Backend.ASSOCIATIVE
        gpu = (platform or jax.default_backend()) == "gpu"
        # Measured on GPUs for cells with one state matmul only; the others take FUSED by name.
        return Backend.FUSED if gpu and cell.one_state_matmul else Backend.SCAN
    if backend is Backend.FUSED:
        _check_fusable(cell)
    if backend is Backend.ASSOCIATIVE:
        check_linear(cell)
    return backend


def resolve_layer(
    backend: "Backend | str",
    cell: Cell,
    *,
    remat: bool = False,
    dtype=jnp.float32,
    with_lengths: bool = False,
    with_resets: bool = False,
    platform: str | None = None,
) -> Backend:
    """The backend of a layer (``rnnjax.LSTM`` ...): as ``resolve``, and CUDNN by name.

    Args:
      backend: a ``Backend`` or its value.
      cell: the layer's cell.
      remat: the layer's ``remat`` (cuDNN keeps its own activations: no remat).
      dtype: the inputs' dtype.
      with_lengths: whether the call has ``lengths`` or a ``mask`` (refused by CUDNN, see
        ``backends._cudnn``).
      with_resets: whether the call has ``resets`` (refused by CUDNN and NATIVE, whose kernels
        carry the state through every step; AUTO then keeps the scan on CPU).
      platform: ``jax.default_backend()`` when None.

    Returns:
      ``Backend.SCAN``, ``Backend.FUSED``, ``Backend.NATIVE``, ``Backend.CUDNN``,
      ``Backend.ASSOCIATIVE``, ``Backend.NEWTON`` or the ``Newton`` options given.
    """
    if isinstance(backend, Newton):  # kept whole: scan_time_major reads its options
        return backend
    backend = _parse(backend)
    platform = platform or jax.default_backend()
    if backend is Backend.NATIVE:
        _raise_if(_native_problem(cell, dtype, platform))
        if with_resets:
            raise ValueError(
                "backend='native' cannot run resets: use backend='scan', 'fused' or 'auto'"
            )
        return backend
    if backend is Backend.AUTO and platform == "cpu" and not with_resets:
        if _native_problem(cell, dtype, platform) is None:
            return Backend.NATIVE
    if backend is not Backend.CUDNN:
        return resolve(backend, cell, platform=platform)
    _check_cudnn_structure(cell, remat)
    if jnp.dtype(dtype) != jnp.float32:
        raise ValueError(f"backend='cudnn' runs float32 inputs, got {jnp.dtype(dtype)}")
    if with_lengths or with_resets:
        given = "resets" if with_resets else "lengths or a mask"
        raise ValueError(
            f"backend='cudnn' runs full-length batches only (no lengths, mask or resets); got "
            f"{given}: use backend='fused' or 'auto' for packed sequences"
        )
    if platform != "gpu":
        raise ValueError(f"backend='cudnn' needs a GPU, but JAX runs on {platform!r}")
    return backend


def check_structure(backend: "Backend | str", cell: Cell, *, remat: bool = False) -> None:
    """What a layer can check when it is built: the backend's name, cell and remat (the platform
    and dtype are known at call time, where ``resolve_layer`` checks them)."""
    backend = _parse(backend)
    if backend is Backend.FUSED:
        _check_fusable(cell)
    elif backend is Backend.NATIVE:
        _raise_if(_native_problem(cell))
    elif backend is Backend.CUDNN:
        _check_cudnn_structure(cell, remat)
    elif backend is Backend.ASSOCIATIVE:
        check_linear(cell)


def _check_cudnn_structure(cell: Cell, remat: bool) -> None:
    if not _cudnn.supports(cell):
        raise ValueError(f"backend='cudnn' needs an LSTM without proj_size, got {cell!r}")
    if remat:
        raise ValueError("backend='cudnn' keeps cuDNN's own activations: it needs remat=False")


def _native_problem(cell: Cell, dtype=None, platform=None) -> str | None:
    """Why NATIVE cannot run this layer, or None; ``dtype`` and ``platform`` are checked when
    given (a layer being built does not know them yet)."""
    if not _native.supports(cell):
        return (
            "backend='native' runs the built-in LSTMCell, GRUCell and ElmanCell (also under a "
            f"bfloat16 MixedPrecisionCell), got {cell!r}"
        )
    if dtype is not None and jnp.dtype(dtype) != jnp.float32:
        return f"backend='native' runs float32 inputs, got {jnp.dtype(dtype)}"
    if platform is None:
        return None
    if platform != "cpu":
        return f"backend='native' runs on CPU, but JAX runs on {platform!r}"
    reason = _native.unavailable_reason()
    return None if reason is None else f"backend='native' cannot run here: {reason}"


def _raise_if(problem: str | None) -> None:
    if problem is not None:
        raise ValueError(problem)
