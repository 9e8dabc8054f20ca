"""``model.precision`` of the recurrent tasks: the cells' matmuls in float32 or bfloat16.

``bfloat16`` rounds the operands of each cell's two matmuls (``rnnjax.with_compute_dtype``); the
parameters, checkpoints, state and gate math stay float32, so a run can switch precision on resume.
"""

import jax.numpy as jnp

import rnnjax
from experiments import config_cli

PRECISIONS = ("float32", "bfloat16")


def validate(config) -> None:
    config_cli.check_choice(config, "model.precision", PRECISIONS)


def name(config) -> str:
    """``model.precision``; a run saved before the field reads as float32."""
    return config.model.get("precision", "float32")


def compute_dtype(config):
    """``jnp.bfloat16`` or None (float32)."""
    return jnp.bfloat16 if name(config) == "bfloat16" else None


def layer(config, layer: rnnjax.Recurrent) -> rnnjax.Recurrent:
    return rnnjax.with_compute_dtype(layer, compute_dtype(config))


def cell(config, cell: rnnjax.cells.Cell) -> rnnjax.cells.Cell:
    dtype = compute_dtype(config)
    return cell if dtype is None else rnnjax.cells.MixedPrecisionCell(cell, dtype)
