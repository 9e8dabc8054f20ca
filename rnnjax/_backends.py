"""Backends of the recurrence: one enum, one resolver, each backend tested against the plain scan.

``SCAN`` is ``lax.scan`` over the cell's step, differentiated by JAX: it runs every cell and
option. ``FUSED`` (``rnnjax._fused_vjp``) has a hand-written backward pass whose weight gradients
are large matmuls after the loop; it needs a fusable cell (``Cell.fusable``). ``CUDNN``
(``rnnjax._cudnn``) runs a whole LSTM layer as cuDNN's fused kernel on a GPU.

``AUTO`` picks what ``benchmarks/RESULTS.md`` measured fastest on the platform at hand:
- CPU: SCAN. FUSED trained 1.2-1.3x slower there: its backward loop (the pointwise VJP rerun
  per step, the saved states read back) costs more than the per-step weight-gradient matmuls it
  removes.
- GPU: FUSED where the cell allows it, else SCAN. On an H200 the fused LSTM training step beat
  the scan by 1.6-2x and cuDNN (through torch or ``jax.experimental.rnn``) by 5-10%, so CUDNN
  is never chosen automatically; it stays available by name, for full-length batches.
"""

import enum

import jax
import jax.numpy as jnp

from rnnjax import _cudnn
from rnnjax.cells import Cell


class Backend(enum.Enum):
    """How a layer runs its recurrence; pass the member or its value (``"auto"``, ...)."""

    AUTO = "auto"
    SCAN = "scan"
    FUSED = "fused"
    CUDNN = "cudnn"


def _parse(backend) -> Backend:
    try:
        return Backend(backend)
    except ValueError:
        names = [b.value for b in Backend]
        raise ValueError(f"backend must be one of {names}, got {backend!r}") from None


def _check_fusable(cell: Cell) -> None:
    if not cell.fusable:
        raise ValueError(
            "backend='fused' needs a fusable cell (built-in LSTM without proj_size, reset-after "
            f"GRU, Elman), got {cell!r}"
        )


def resolve(backend: "Backend | str", cell: Cell, *, platform: str | None = None) -> Backend:
    """SCAN or FUSED for one direction of ``cell`` (``rnnjax.unroll``, ``scan_time_major``).

    Args:
      backend: a ``Backend`` or its value; CUDNN is refused (it runs whole layers).
      cell: the cell to run.
      platform: ``jax.default_backend()`` when None.

    Returns:
      ``Backend.SCAN`` or ``Backend.FUSED``.
    """
    backend = _parse(backend)
    if backend is Backend.CUDNN:
        raise ValueError(
            "backend='cudnn' runs whole layers: use rnnjax.LSTM(..., backend='cudnn'), "
            "not rnnjax.unroll"
        )
    if backend is Backend.AUTO:
        gpu = (platform or jax.default_backend()) == "gpu"
        return Backend.FUSED if gpu and cell.fusable else Backend.SCAN
    if backend is Backend.FUSED:
        _check_fusable(cell)
    return backend


def resolve_layer(
    backend: "Backend | str",
    cell: Cell,
    *,
    remat: bool = False,
    dtype=jnp.float32,
    with_lengths: bool = False,
    platform: str | None = None,
) -> Backend:
    """The backend of a layer (``rnnjax.LSTM`` ...): as ``resolve``, and CUDNN by name.

    Args:
      backend: a ``Backend`` or its value.
      cell: the layer's cell.
      remat: the layer's ``remat`` (cuDNN keeps its own activations: no remat).
      dtype: the inputs' dtype.
      with_lengths: whether the call has ``lengths`` (refused by CUDNN, see ``rnnjax._cudnn``).
      platform: ``jax.default_backend()`` when None.

    Returns:
      ``Backend.SCAN``, ``Backend.FUSED`` or ``Backend.CUDNN``.
    """
    backend = _parse(backend)
    platform = platform or jax.default_backend()
    if backend is not Backend.CUDNN:
        return resolve(backend, cell, platform=platform)
    if not _cudnn.supports(cell):
        raise ValueError(f"backend='cudnn' needs an LSTM without proj_size, got {cell!r}")
    if remat:
        raise ValueError("backend='cudnn' keeps cuDNN's own activations: it needs remat=False")
    if jnp.dtype(dtype) != jnp.float32:
        raise ValueError(f"backend='cudnn' runs float32 inputs, got {jnp.dtype(dtype)}")
    if with_lengths:
        raise ValueError(
            "backend='cudnn' runs full-length batches only (lengths=None); got lengths: use "
            "backend='fused' or 'auto' for packed sequences"
        )
    if platform != "gpu":
        raise ValueError(f"backend='cudnn' needs a GPU, but JAX runs on {platform!r}")
    return backend
