"""The fused backend: a time-major recurrence whose backward pass is written by hand (cuDNN's plan).

Reverse-mode autodiff of ``lax.scan`` computes, at every step, the cotangent of the recurrent
weight ``dW_hh += h_{t-1}^T dz_t`` (a ``[P, B] @ [B, G*H]`` matmul), and carries the ``[P, G*H]``
accumulator through the loop. Here the backward scan carries only the state cotangent (dh, and dc
for an LSTM): per step it runs the pointwise part's VJP and one ``dz_t @ W^T``. Everything that
does not feed the recurrence leaves the loop and becomes one large matmul over all T*B rows:

    dW = H_prev^T @ DZ        ([P, T*B] @ [T*B, G*H])
    dprojected = DZ-like      -> the hoisted input projection's autodiff then gives
                                 dW_ih = X^T @ dprojected and dx = dprojected @ W_ih^T, also large.

With ``hoisted=False`` the forward pass projects the inputs inside the loop (one more small matmul
per step, which on XLA:CPU costs less than the separate ``[T*B, I] @ [I, GH]`` matmul and the
round trip of its ``[T, B, GH]`` result through memory) and keeps the projections for the backward
pass, where the input gradients are still the large matmuls above.

It applies to cells whose step is ``pointwise_step(params, s, projected, recurrent_input(s) @ W)``
(``Cell.fusable``): the built-in LSTM, GRU and Elman cells, the LayerNorm and peephole LSTMs and
the MGU. Other parameters the pointwise part reads (the GRU's ``b_hn``; the LSTM's projection
``W_hr`` and the reset-before GRU's ``W_hn``, whose matmuls sit inside ``pointwise_step``) get
their gradients summed in the loop, by autodiff of the pointwise part.

Shapes: T time, B batch, P recurrent input, GH = G*H gates. All arrays are time-major.
"""

import functools

import jax
import jax.numpy as jnp

from rnnjax.cells import Cell
from rnnjax.recurrence.backends._autodiff import forward_mode_hint


def fused_recurrence(
    cell: Cell,
    params,
    projected,
    state0,
    valid=None,
    restarts=None,
    *,
    reverse: bool = False,
    unroll: int = 1,
    save_hw: bool = True,
    hoisted: bool = True,
):
    """Runs a fusable cell over ``projected: [T, B, GH]`` from ``state0`` (leaves ``[B, ...]``).

    Args:
      cell: a cell with ``cell.fusable``.
      params: its parameters.
      projected: ``[T, B, GH]`` output of ``cell.project_inputs``, or with ``hoisted=False`` the
        raw inputs ``[T, B, I]``, projected step by step.
      state0: the initial state with a leading batch axis.
      valid: optional ``[T, B]`` booleans; an invalid step keeps the state and outputs zeros.
      restarts: optional ``[T, B]`` booleans; the state is ``state0`` again before a marked step
        (``rnnjax.recurrence._masks.restarts``: already shifted for ``reverse``).
      reverse: run from t = T-1 down to 0.
      unroll: steps per loop iteration, for both scans.
      save_hw: keep ``h_{t-1} @ W`` from the forward pass (``[T, B, GH]`` of memory) instead of
        recomputing it in the backward pass as one large matmul.
      hoisted: whether ``projected`` is already projected (see above).

    Returns:
      ``(outputs [T, B, O], final_state)``, the values of the plain scan.
    """
    with forward_mode_hint("fused"):
        return _fused(
            cell, reverse, unroll, save_hw, hoisted, params, projected, state0, valid, restarts
        )


def _batched(cell: Cell):
    """The cell's pointwise step and state read over a leading batch axis (params shared)."""
    pointwise = jax.vmap(cell.pointwise_step, in_axes=(None, 0, 0, 0))
    read = jax.vmap(cell.recurrent_input)
    return pointwise, read


def select_valid(valid, new, old):
    """``where(valid[b], new, old)`` per example, leaf by leaf; ``valid`` is ``[B]``."""

    def one(n, o):
        return jnp.where(jnp.reshape(valid, valid.shape + (1,) * (n.ndim - 1)), n, o)

    return jax.tree.map(one, new, old)


def _forward(cell, reverse, unroll, hoisted, params, inputs, state0, valid, restarts, keep):
    """The forward scan; with ``keep`` it also returns each step's previous state, ``hw`` and
    (unless ``hoisted``) projected input."""
    pointwise, read = _batched(cell)
    w = cell.recurrent_weight(params)

    def step(state, inputs):
        x, v, r = inputs
        if r is not None:
            state = select_valid(r, state0, state)
        if not hoisted:
            x = cell.project_inputs(params, x)
        hw = read(state) @ w
        new_state, out = pointwise(params, state, x, hw)
        if v is not None:
            new_state = select_valid(v, new_state, state)
            out = select_valid(v, out, jnp.zeros_like(out))
        return new_state, ((out, state, hw, None if hoisted else x) if keep else out)

    final, ys = jax.lax.scan(
        step, state0, (inputs, valid, restarts), reverse=reverse, unroll=unroll
    )
    return final, ys


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3, 4))
def _fused(cell, reverse, unroll, save_hw, hoisted, params, inputs, state0, valid, restarts):
    final, outputs = _forward(
        cell, reverse, unroll, hoisted, params, inputs, state0, valid, restarts, False
    )
    return outputs, final


def _fused_fwd(cell, reverse, unroll, save_hw, hoisted, params, inputs, state0, valid, restarts):
    final, (outputs, prev, hw, projected) = _forward(
        cell, reverse, unroll, hoisted, params, inputs, state0, valid, restarts, True
    )
    if hoisted:
        projected, inputs = inputs, None
    residuals = (params, inputs, projected, valid, restarts, prev, hw if save_hw else None)
    return (outputs, final), residuals


def _fused_bwd(cell, reverse, unroll, save_hw, hoisted, residuals, cotangents):
    params, xs, projected, valid, restarts, prev, hw = residuals
    d_outputs, d_final = cotangents
    pointwise, read = _batched(cell)
    w = cell.recurrent_weight(params)
    reads = jax.vmap(read)(prev)  # [T, B, P]
    steps, batch = projected.shape[:2]
    if hw is None:  # one [T*B, P] @ [P, GH] matmul instead of T small ones
        hw = jnp.reshape(jnp.reshape(reads, (steps * batch, -1)) @ w, projected.shape)

    def step(carry, inputs):
        d_state, d_params, d_restarted = carry
        state, x, hw_t, d_out, v, r = inputs
        zeros = jax.tree.map(jnp.zeros_like, d_state)
        if v is not None:  # an invalid step passes d_state through and gets no cotangent
            d_new, d_out = (
                select_valid(v, d_state, zeros),
                select_valid(v, d_out, jnp.zeros_like(d_out)),
            )
        else:
            d_new = d_state
        _, vjp = jax.vjp(pointwise, params, state, x, hw_t)
        dp, d_prev, dx, dhw = vjp((d_new, d_out))
        _, read_vjp = jax.vjp(read, state)
        (d_read,) = read_vjp(dhw @ w.T)
        d_prev = jax.tree.map(jnp.add, d_prev, d_read)
        if v is not None:
            d_prev = select_valid(v, d_prev, d_state)
        if r is not None:  # a restarted step's state is state0, not the previous step's
            d_restarted = jax.tree.map(jnp.add, d_restarted, select_valid(r, d_prev, zeros))
            d_prev = select_valid(r, zeros, d_prev)
        return (d_prev, jax.tree.map(jnp.add, d_params, dp), d_restarted), (dx, dhw)

    d_params0 = jax.tree.map(jnp.zeros_like, params)
    d_restarted0 = None if restarts is None else jax.tree.map(jnp.zeros_like, d_final)
    (d_state0, d_params, d_restarted), (d_projected, dhw) = jax.lax.scan(
        step,
        (d_final, d_params0, d_restarted0),
        (prev, projected, hw, d_outputs, valid, restarts),
        reverse=not reverse,
        unroll=unroll,
    )
    if restarts is not None:
        d_state0 = jax.tree.map(jnp.add, d_state0, d_restarted)
    # dW = sum_t h_{t-1}^T dz_t as one [P, T*B] @ [T*B, GH] matmul.
    d_w = jnp.reshape(reads, (steps * batch, -1)).T @ jnp.reshape(dhw, (steps * batch, -1))
    _, weight_vjp = jax.vjp(cell.recurrent_weight, params)
    (d_params_w,) = weight_vjp(d_w)
    d_params = jax.tree.map(jnp.add, d_params, d_params_w)
    if hoisted:
        return d_params, d_projected, d_state0, None, None
    # The input projection's gradients over all T*B rows at once: dW_ih = X^T dZ, dx = dZ W_ih^T.
    _, project_vjp = jax.vjp(cell.project_inputs, params, xs)
    d_params_x, d_xs = project_vjp(d_projected)
    return jax.tree.map(jnp.add, d_params, d_params_x), d_xs, d_state0, None, None


_fused.defvjp(_fused_fwd, _fused_bwd)
