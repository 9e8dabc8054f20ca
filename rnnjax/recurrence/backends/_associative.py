"""The ASSOCIATIVE backend: a linear cell over a whole sequence as one parallel prefix scan.

For ``h_t = a_t * h_{t-1} + b_t`` (``rnnjax.cells.LinearCell``) the state at every step is a
prefix of the associative composition ``(a1, b1) then (a2, b2) = (a2 * a1, a2 * b1 + b2)``, so
``jax.lax.associative_scan`` computes all T states in O(log T) parallel depth. Nothing is
divided and no cumulative product is inverted: with ``|a| <= 1`` every partial product and sum
stays bounded, so float32 holds over long sequences (the ``cumsum`` form ``A_t * sum b_k / A_k``
overflows once ``A_t`` underflows). Gradients are JAX's, through the scan.

On CPU the same composition runs blocked (``blocked_scan``): a handful of cores gain nothing from
log T passes over ``[T, B, H]`` arrays, while sqrt(T) blocks side by side vectorise well; on
GPU and TPU, ``jax.lax.associative_scan``. Both give the sequential scan's values.
"""

import math

import jax
import jax.numpy as jnp

from rnnjax.cells import Cell
from rnnjax.cells._linear import LinearCell


def combine(earlier, later):
    """Composes two linear steps (or blocks of steps): first ``earlier``, then ``later``."""
    a1, b1 = earlier
    a2, b2 = later
    return a2 * a1, a2 * b1 + b2


def linear_scan(a, b, initial, *, reverse: bool = False, chunk: int | None = None):
    """All states of ``h_t = a_t * h_{t-1} + b_t`` along axis 0.

    Args:
      a, b: ``[T, ...]`` coefficients (broadcast against each other).
      initial: ``[...]`` the state before the first step (before step T-1 when ``reverse``).
      reverse: run t = T-1, ..., 0.
      chunk: None for ``jax.lax.associative_scan`` (log T passes over the arrays: what a GPU
        runs in parallel); an int L for the blocked form ``blocked_scan`` (about three passes:
        what a CPU's few cores and memory bandwidth favour). Same values.

    Returns:
      ``[T, ...]`` states, ``h[t]`` after step t.
    """
    a, b = jnp.broadcast_arrays(a, b)
    if reverse:
        return linear_scan(a[::-1], b[::-1], initial, chunk=chunk)[::-1]
    # Fold the initial state into the first step's offset: the scan then starts from zero.
    b = b.at[0].add(a[0] * initial)
    if chunk is not None:
        return blocked_scan(a, b, chunk)
    return jax.lax.associative_scan(combine, (a, b), axis=0)[1]


def blocked_scan(a, b, chunk: int):
    """``linear_scan`` from zero in blocks of ``chunk`` steps: a sequential scan over the
    positions within a block runs all T / chunk blocks side by side, a short scan carries the
    state from block to block, and one elementwise pass adds each block's incoming state."""
    steps = a.shape[0]
    blocks = -(-steps // chunk)
    pad = blocks * chunk - steps
    if pad:  # identity steps at the end change no state before them
        widths = [(0, pad)] + [(0, 0)] * (a.ndim - 1)
        a = jnp.pad(a, widths, constant_values=1)
        b = jnp.pad(b, widths)
    # [chunk, blocks, ...]: position within the block first, so the scan slices whole blocks.
    a = jnp.swapaxes(a.reshape(blocks, chunk, *a.shape[1:]), 0, 1)
    b = jnp.swapaxes(b.reshape(blocks, chunk, *b.shape[1:]), 0, 1)

    def within(carry, ab):
        prod, h = carry
        a_l, b_l = ab
        prod, h = a_l * prod, a_l * h + b_l
        return (prod, h), (prod, h)

    start = (jnp.ones_like(a[0]), jnp.zeros_like(b[0]))
    (block_a, block_b), (prods, local) = jax.lax.scan(within, start, (a, b))

    def across(h, ab):
        return ab[0] * h + ab[1], h  # emits the state entering each block

    _, incoming = jax.lax.scan(across, jnp.zeros_like(block_b[0]), (block_a, block_b))
    states = local + prods * incoming[None]
    states = jnp.swapaxes(states, 0, 1).reshape(blocks * chunk, *states.shape[2:])
    return states[:steps]


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
    states = linear_scan(a, b, initial_state, reverse=reverse, chunk=_chunk(a.shape[0]))
    outputs = cell.linear_output(params, states, projected)
    if valid is not None:
        outputs = jnp.where(valid[..., None], outputs, jnp.zeros((), outputs.dtype))
    return outputs, states[0 if reverse else -1]


def _chunk(steps: int) -> int | None:
    """The block length on CPU (sqrt T balances the two sequential scans); None elsewhere."""
    if jax.default_backend() in ("gpu", "tpu"):
        return None
    return max(1, math.isqrt(steps - 1) + 1) if steps > 1 else None


def check_linear(cell: Cell) -> None:
    """Raises unless ``cell`` has a linear recurrence."""
    if not isinstance(cell, LinearCell):
        raise ValueError(
            "backend='associative' needs a cell with a linear recurrence (a "
            f"rnnjax.cells.LinearCell: MinGRUCell, MinLSTMCell, LRUCell), got {cell!r}"
        )
