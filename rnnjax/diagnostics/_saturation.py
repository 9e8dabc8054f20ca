"""Gate saturation and state norms over time, measured on a batch's trajectory."""

import jax
import jax.numpy as jnp

from rnnjax._shapes import Array, Float
from rnnjax.cells import Cell, GRUCell, LSTMCell, MixedPrecisionCell
from rnnjax.diagnostics._gradients import hidden_of


def _trajectory(cell: Cell, params, x):
    """The states before each step (leaves ``[T, B, ...]``) and the projected inputs."""
    xs = jnp.swapaxes(x, 0, 1)
    state0 = jax.tree.map(
        lambda s: jnp.zeros((x.shape[0], *s.shape), s.dtype),
        cell.initial_state(jnp.result_type(x, *jax.tree.leaves(params))),
    )
    step = jax.vmap(cell.recurrent_step, in_axes=(None, 0, 0))

    def body(state, projected):
        return step(params, state, projected)[0], state

    projected = cell.project_inputs(params, xs)
    final, before = jax.lax.scan(body, state0, projected)
    return before, projected, final


def gated(cell: Cell) -> LSTMCell | GRUCell | None:
    """The LSTM or GRU that ``cell`` computes (itself, or under a ``MixedPrecisionCell``)."""
    inner = cell.cell if isinstance(cell, MixedPrecisionCell) else cell
    return inner if isinstance(inner, LSTMCell | GRUCell) else None


def _sigmoid_gates(cell: Cell, params, before, projected) -> dict:
    """The named sigmoid gates ``[T, B, H]`` of an LSTM (i, f, o) or GRU (r, z), from the cell's
    own state matmul (a mixed-precision policy's rounding included)."""
    h = cell.hidden_size
    hw = (cell.recurrent_input(before) @ cell.recurrent_weight(params)).astype(projected.dtype)
    if isinstance(gated(cell), LSTMCell):
        z = projected + hw
        names = {"input": 0, "forget": 1, "output": 3}  # (i, f, g, o): g is a tanh
        return {name: jax.nn.sigmoid(z[..., k * h : (k + 1) * h]) for name, k in names.items()}
    z = projected[..., : 2 * h] + hw[..., : 2 * h]
    return {"reset": jax.nn.sigmoid(z[..., :h]), "update": jax.nn.sigmoid(z[..., h:])}


def gate_saturation(
    cell: Cell, params, x: Float[Array, "B T I"], high: float = 0.99, low: float = 0.01
) -> dict:
    """The fraction of each sigmoid gate's units above ``high`` and below ``low``, per step.

    Saturated gates pass no gradient (sigmoid' = s (1 - s) is then below 0.01): a forget gate
    saturated open is a long memory, one saturated shut a reset at every step.

    Args:
      cell: an ``LSTMCell`` (gates input, forget, output) or ``GRUCell`` (reset, update), or
        either under a ``MixedPrecisionCell``.
      params: its parameters.
      x: ``[B, T, I]`` inputs.
      high, low: the thresholds.

    Returns:
      ``{gate: {"above": [T], "below": [T]}}``, fractions over the batch and the units.
    """
    if gated(cell) is None:
        raise ValueError(f"gate_saturation needs an LSTMCell or GRUCell, got {type(cell).__name__}")
    before, projected, _ = _trajectory(cell, params, x)
    gates = _sigmoid_gates(cell, params, before, projected)
    return {
        name: {
            "above": jnp.mean((g > high).astype(jnp.float32), axis=(1, 2)),
            "below": jnp.mean((g < low).astype(jnp.float32), axis=(1, 2)),
        }
        for name, g in gates.items()
    }


def state_norms(cell: Cell, params, x: Float[Array, "B T I"]) -> Float[Array, " T"]:
    """``||h_t||`` (the state's hidden part) after each step, averaged over the batch."""
    before, _, final = _trajectory(cell, params, x)
    hidden = jnp.concatenate([hidden_of(before)[1:], hidden_of(final)[None]], axis=0)
    return jnp.mean(jnp.linalg.norm(hidden, axis=-1), axis=1)
