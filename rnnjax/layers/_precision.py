"""A layer with its cells' matmuls in another dtype: the Flax modules' ``dtype`` attribute."""

import dataclasses

import jax.numpy as jnp

from rnnjax.cells import MixedPrecisionCell
from rnnjax.layers._layers import Recurrent, Stack


def with_compute_dtype(layer: Recurrent, dtype) -> Recurrent:
    """``layer`` with each cell's two matmuls in ``dtype`` (``rnnjax.cells.MixedPrecisionCell``).

    ``None`` and float32 return ``layer`` itself; ``jnp.bfloat16`` gives a ``Stack`` of the same
    configuration whose cell rounds the matmul operands to bf16 and keeps the state, sums, gate
    math and parameters in float32. The parameters (and checkpoints) are the same in both.
    """
    try:
        exact = dtype is None or jnp.dtype(dtype) == jnp.float32
    except TypeError:
        raise ValueError(
            f"dtype must be None, float32 or a floating dtype such as jnp.bfloat16, got {dtype!r}"
        ) from None
    if exact:
        return layer
    options = {f.name: getattr(layer, f.name) for f in dataclasses.fields(Recurrent)}
    return Stack(cell=MixedPrecisionCell(layer.cell, dtype), **options)
