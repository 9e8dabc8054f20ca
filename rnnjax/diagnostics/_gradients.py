"""The gradient that reaches each time step: ||dL/dh_t|| for every t and layer, from one VJP.

How: the stack is run with a zero perturbation ``e_t`` added to each layer's hidden state right
after step t, both where it is carried to step t+1 and where it is output (to the next layer or
the loss). The perturbation changes nothing, and ``dL/de_t`` is the total derivative ``dL/dh_t``
(through the recurrence and through the outputs): BPTT's gradient at step t. One ``jax.vjp`` of
the loss with respect to all the ``e`` gives every t and every layer at the cost of one backward
pass. ``h_t`` is the cell's output, which for every built-in cell is its state's ``hidden`` part
(or the whole state for RNN and GRU); for the LSTM the cell state ``c_t`` is not included.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from rnnjax._shapes import Array, Float
from rnnjax.cells import Cell
from rnnjax.layers import Recurrent


def hidden_of(state):
    """The part of a state that a built-in cell outputs: ``state.hidden`` or the state itself."""
    if hasattr(state, "hidden"):
        return state.hidden
    if isinstance(state, jax.Array):
        return state
    raise ValueError(
        f"diagnostics need a cell state that is an array or has a .hidden field, got "
        f"{type(state).__name__}"
    )


def _with_hidden(state, hidden):
    return state._replace(hidden=hidden) if hasattr(state, "hidden") else hidden


def run_cell(cell: Cell, params, xs, state0, perturbation, reverse: bool = False):
    """Runs ``cell`` over a time-major batch, ``perturbation`` added to each step's hidden part.

    Args:
      cell: any cell whose output is its state's hidden part (see ``hidden_of``).
      params: the cell's parameters.
      xs: ``[T, B, I]`` inputs.
      state0: the initial state with leaves ``[B, ...]``.
      perturbation: ``[T, B, H]`` added to the output and carried state of each step.
      reverse: run from the last step to the first (the backward direction).

    Returns:
      ``(outputs [T, B, H], states)``, ``states`` the state after each step with leaves
      ``[T, B, ...]``.
    """
    step = jax.vmap(cell.recurrent_step, in_axes=(None, 0, 0))

    def body(state, inputs):
        x, e = inputs
        state, out = step(params, state, cell.project_inputs(params, x))
        state = _with_hidden(state, hidden_of(state) + e)
        return state, (out + e, state)

    _, (outputs, states) = jax.lax.scan(body, state0, (xs, perturbation), reverse=reverse)
    return outputs, states


def run_stack(layer: Recurrent, params, x, perturbations=None):
    """Runs ``layer`` (batch first, no dropout) with one perturbation per layer and direction.

    Args:
      layer: an ``rnnjax.Recurrent`` stack (RNN, LSTM, GRU, Stack), any number of layers and
        directions.
      params: the layer's parameters.
      x: ``[B, T, I]`` inputs.
      perturbations: ``[L*D, T, B, H]`` or None for zeros.

    Returns:
      ``(outputs [B, T, D*H], inputs)``: the layer's outputs and the ``[T, B, F]`` inputs of each
      of its ``L*D`` cells, in PyTorch's order ``layer * D + direction``.
    """
    cell, d = layer.cell, layer.num_directions
    xs = jnp.swapaxes(jnp.asarray(x), 0, 1)
    num_steps, batch = xs.shape[:2]
    state0 = jax.tree.map(
        lambda s: jnp.zeros((batch, *s.shape), s.dtype),
        cell.initial_state(jnp.result_type(xs, *jax.tree.leaves(params))),
    )
    if perturbations is None:
        shape = (layer.num_layers * d, num_steps, batch, cell.output_size)
        perturbations = jnp.zeros(shape, xs.dtype)
    inputs = []
    for first in range(0, layer.num_layers * d, d):
        outputs = []
        for index in range(first, first + d):
            inputs.append(xs)
            reverse = index % d == 1
            out, _ = run_cell(cell, params[index], xs, state0, perturbations[index], reverse)
            outputs.append(out)
        xs = jnp.concatenate(outputs, axis=-1) if d == 2 else outputs[0]
    return jnp.swapaxes(xs, 0, 1), inputs


def gradient_norms_through_time(
    layer: Recurrent,
    params,
    x: Float[Array, "B T I"],
    loss_fn: Callable[[Float[Array, "B T DH"]], Float[Array, ""]],
) -> Float[Array, "LD T"]:
    """||dL/dh_t|| for every step t of every layer and direction, from one VJP.

    Args:
      layer: an ``rnnjax.Recurrent`` stack (batch first; its dropout is not applied).
      params: the layer's parameters.
      x: ``[B, T, I]`` inputs.
      loss_fn: the scalar loss as a function of the layer's outputs ``[B, T, D*H]`` (e.g. a head
        and the task's loss, with the targets closed over).

    Returns:
      ``[L*D, T]``: for each cell (``layer * D + direction``) and step, the norm of the loss's
      gradient with respect to that step's hidden state, averaged over the batch's examples.

    Example::

        norms = rnnjax.diagnostics.gradient_norms_through_time(
            layer, params, x, lambda out: jnp.mean((out[:, -1] @ w - y) ** 2))
        plt.semilogy(norms[0])   # vanishing: norms[0, :10] << norms[0, -10:]
    """
    if not layer.batch_first:
        raise ValueError("gradient_norms_through_time needs a batch_first layer, got False")
    count = layer.num_layers * layer.num_directions
    batch, num_steps = x.shape[:2]
    zeros = jnp.zeros(
        (count, num_steps, batch, layer.cell.output_size),
        jnp.result_type(x, *jax.tree.leaves(params)),
    )
    loss, vjp = jax.vjp(lambda e: loss_fn(run_stack(layer, params, x, e)[0]), zeros)
    (grads,) = vjp(jnp.ones_like(loss))
    return jnp.mean(jnp.linalg.norm(grads, axis=-1), axis=-1)
