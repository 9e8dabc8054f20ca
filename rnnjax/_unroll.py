"""Rolling a cell over the time axis of ONE sequence with ``jax.lax.scan``."""

import jax
import jax.numpy as jnp

from rnnjax._shapes import Array, Float, Int
from rnnjax.cells import Cell


def unroll(
    cell: Cell,
    params,
    xs: Float[Array, "T I"],
    initial_state=None,
    *,
    length: Int[Array, ""] | int | None = None,
    reverse: bool = False,
    unroll: int = 1,
    remat: bool = False,
    hoist_inputs: bool = True,
):
    """Runs ``cell`` over a sequence ``xs: [T, I]``; batch it with ``jax.vmap``.

    With a ``length`` L, steps at positions >= L leave the state unchanged and output zeros, which
    is what PyTorch computes for a packed sequence; with ``reverse=True`` the steps run
    L-1, ..., 0 and the padding is never seen. Batching over any number of leading axes::

        run = lambda x, n: rnnjax.unroll(cell, params, x, length=n)
        outputs, states = jax.vmap(run)(xs, lengths)        # xs: [B, T, I], lengths: [B]

    Args:
      cell: the cell to run.
      params: the cell's parameters.
      xs: ``[T, I]`` inputs.
      initial_state: the cell's state for one example; zeros when None.
      length: number of valid steps, a scalar in [0, T]; all T when None.
      reverse: process time backwards; outputs stay at the positions of their inputs.
      unroll: steps unrolled per loop iteration of the scan.
      remat: recompute each step in the backward pass (``jax.checkpoint``) instead of storing its
        intermediates: less memory on long sequences for about one more forward pass.
      hoist_inputs: compute the input projection for all steps in one matmul before the scan
        (True) or inside each step (False).

    Returns:
      ``(outputs [T, O], final_state)``; outputs are zero at padded positions and ``final_state``
      is the state after the last valid step (after position 0 when ``reverse``).
    """
    xs = jnp.asarray(xs)
    if xs.ndim != 2:
        raise ValueError(
            f"xs must be one sequence of shape [T, I] (batch with jax.vmap), got shape {xs.shape}"
        )
    if not jnp.issubdtype(xs.dtype, jnp.floating):
        raise ValueError(f"xs must have a floating dtype, got {xs.dtype}")
    if initial_state is None:
        initial_state = cell.initial_state(xs.dtype)

    if hoist_inputs:
        inputs = cell.project_inputs(params, xs)

        def one_step(state, x):
            return cell.recurrent_step(params, state, x)
    else:
        inputs = xs

        def one_step(state, x):
            return cell.step(params, state, x)

    if remat:
        one_step = jax.checkpoint(one_step)

    if length is None:
        final_state, outputs = jax.lax.scan(
            one_step, initial_state, inputs, reverse=reverse, unroll=unroll
        )
        return outputs, final_state

    def masked_step(state, x_and_t):
        x, t = x_and_t
        new_state, output = one_step(state, x)
        valid = t < length
        new_state = jax.tree.map(lambda new, old: jnp.where(valid, new, old), new_state, state)
        return new_state, jnp.where(valid, output, jnp.zeros_like(output))

    steps = jnp.arange(xs.shape[0])
    final_state, outputs = jax.lax.scan(
        masked_step, initial_state, (inputs, steps), reverse=reverse, unroll=unroll
    )
    return outputs, final_state
