"""The ASSOCIATIVE backend: a linear cell over a whole sequence as one parallel prefix scan.

For ``h_t = a_t * h_{t-1} + b_t`` (``rnnjax.cells.LinearCell``) the state at every step is a
prefix of the associative composition ``(a1, b1) then (a2, b2) = (a2 * a1, a2 * b1 + b2)``, so
``jax.lax.associative_scan`` computes all T states in O(log T) parallel depth. Nothing is
divided and no cumulative product is inverted: with ``|a| <= 1`` every partial product and sum
stays bounded, so float32 holds over long sequences (the ``cumsum`` form ``A_t * sum b_k / A_k``
overflows once ``A_t`` underflows). Gradients are JAX's, through the scan.
"""

import jax
import jax.numpy as jnp

from rnnjax.cells import Cell
from rnnjax.cells._linear import LinearCell


def combine(earlier, later):
    """Composes two linear steps (or blocks of steps): first ``earlier``, then ``later``."""
    a1, b1 = earlier
    a2, b2 = later
    return a2 * a1, a2 * b1 + b2


def linear_scan(a, b, initial, *, reverse: bool = False):
    """All states of ``h_t = a_t * h_{t-1} + b_t`` along axis 0.

    Args:
      a, b: ``[T, ...]`` coefficients (broadcast against each other).
      initial: ``[...]`` the state before the first step (before step T-1 when ``reverse``).
      reverse: run t = T-1, ..., 0.

    Returns:
      ``[T, ...]`` states, ``h[t]`` after step t.
    """
    a, b = jnp.broadcast_arrays(a, b)
    first = -1 if reverse else 0
    # Fold the initial state into the first step's offset: the scan then starts from zero.
    b = b.at[first].add(a[first] * initial)
    _, states = jax.lax.associative_scan(combine, (a, b), reverse=reverse, axis=0)
    return states


def associative_recurrence(
    cell: Cell, params, xs, initial_state, valid=None, restarts=None, *, reverse: bool = False
):
    """``scan_time_major`` for a ``LinearCell`` as one associative scan over time.

    Args:
      cell: a ``LinearCell``.
      params: its parameters.
      xs: ``[T, B, I]`` inputs (zero at padding).
      initial_state: ``[B, S]``.
      valid: optional ``[T, B]`` booleans; padded steps keep the state (``a = 1, b = 0``).
      restarts: optional ``[T, B]`` booleans: the step starts from ``initial_state`` instead of
        the previous state (``a = 0``, ``b`` += ``a * initial_state``).
      reverse: as ``scan_time_major``.

    Returns:
      ``(outputs [T, B, O], final_state [B, S])``.
    """
    projected = cell.project_inputs(params, xs)
    a, b = cell.linear_coefficients(params, projected)
    a, b = jnp.broadcast_arrays(a, b)
    if valid is not None:
        keep = valid[..., None]
        a = jnp.where(keep, a, jnp.ones((), a.dtype))
        b = jnp.where(keep, b, jnp.zeros((), b.dtype))
    initial_state = initial_state.astype(b.dtype)
    if restarts is not None:
        restart = restarts[..., None]
        b = jnp.where(restart, a * initial_state[None] + b, b)
        a = jnp.where(restart, jnp.zeros((), a.dtype), a)
    states = linear_scan(a, b, initial_state, reverse=reverse)
    outputs = cell.linear_output(params, states, projected)
    if valid is not None:
        outputs = jnp.where(valid[..., None], outputs, jnp.zeros((), outputs.dtype))
    return outputs, states[0 if reverse else -1]


def check_linear(cell: Cell) -> None:
    """Raises unless ``cell`` has a linear recurrence."""
    if not isinstance(cell, LinearCell):
        raise ValueError(
            "backend='associative' needs a cell with a linear recurrence (a "
            f"rnnjax.cells.LinearCell: MinGRUCell, MinLSTMCell, LRUCell), got {cell!r}"
        )
