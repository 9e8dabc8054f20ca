"""The NEWTON backend: all T states of any differentiable cell at once, by Newton's method.

DEER (Lim et al., 2024) writes the recurrence ``h_t = f(h_{t-1}, x_t)`` as one system of T
equations and solves it by Newton iterations. Linearised around a guess ``g``, the system is a
linear recurrence ``h_t = J_t h_{t-1} + (f(g_{t-1}) - J_t g_{t-1})`` with ``J_t`` the step's
Jacobian at ``g_{t-1}``, which a parallel prefix scan over the pairs ``(J_t, offset_t)`` solves in
O(log T) depth (``[S, S]`` matrix products). Quasi-DEER (Gonzalez et al., 2024) keeps only the
diagonal of ``J_t``: elementwise products, O(S) memory per step instead of O(S^2), more
iterations. Any approximation of ``J`` keeps the fixed point (the true states solve every
linearised system), and iteration k makes at least the first k steps exact, so T iterations
always suffice; ``damping`` shrinks the Jacobians by ``1 / (1 + damping)``, which slows
convergence but tames the overshoot of unstable linearisations, the failure ELK (Gonzalez et
al.) damps with its Levenberg-Marquardt step.

Gradients follow from the implicit function theorem, not from the iterations: at the solution
the cotangents obey the adjoint recurrence ``lambda_t = dL/dh_t + J_{t+1}^T lambda_{t+1}``, one
more linear recurrence, solved backwards by the same associative scan (full Jacobians) or by a
sequential scan of the step's VJP (quasi: full Jacobians may not fit, and the gradient must be
exact).
"""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from rnnjax.cells import Cell
from rnnjax.recurrence.backends._associative import linear_scan


@dataclasses.dataclass(frozen=True)
class Newton:
    """Options of the NEWTON backend; pass an instance as ``backend=`` (``"newton"`` = defaults).

    Attributes:
      tol: stop when ``max |f(h_{t-1}, x_t) - h_t|`` over all steps, examples and features is
        at most ``tol`` (> 0; float32 states reach about 1e-7 times their size).
      max_iters: the most Newton iterations; None means T, which always converges.
      quasi: diagonal Jacobians (quasi-DEER) or full ones (DEER); None picks quasi when the
        flattened state has more than ``quasi_above`` features.
      quasi_above: see ``quasi``.
      damping: >= 0, Jacobians scaled by ``1 / (1 + damping)`` (0: plain Newton).
      verbose: print the iterations and the final residual of every call (``jax.debug.print``).
    """

    tol: float = 1e-6
    max_iters: int | None = None
    quasi: bool | None = None
    quasi_above: int = 64
    damping: float = 0.0
    verbose: bool = False

    def __post_init__(self):
        if not isinstance(self.tol, (int, float)) or not self.tol > 0:
            raise ValueError(f"Newton tol must be a number > 0, got {self.tol!r}")
        if self.max_iters is not None and (
            isinstance(self.max_iters, bool)
            or not isinstance(self.max_iters, int)
            or self.max_iters < 1
        ):
            raise ValueError(
                f"Newton max_iters must be a positive int or None, got {self.max_iters!r}"
            )
        if not isinstance(self.damping, (int, float)) or not self.damping >= 0:
            raise ValueError(f"Newton damping must be a number >= 0, got {self.damping!r}")

    def use_quasi(self, state_features: int) -> bool:
        return self.quasi if self.quasi is not None else state_features > self.quasi_above


class NewtonResult(NamedTuple):
    """What ``newton_states`` returns.

    Attributes:
      states: the state after every step, leaves ``[T, B, ...]``.
      iterations: Newton updates made (int32 scalar).
      residual: ``max |f(h_{t-1}, x_t) - h_t|`` of the returned states (scalar).
    """

    states: Any
    iterations: jax.Array
    residual: jax.Array


def newton_states(
    cell: Cell,
    params,
    xs,
    initial_state,
    valid=None,
    *,
    config: Newton = Newton(),
    reverse: bool = False,
    guess=None,
) -> NewtonResult:
    """Solves for all states of ``cell`` over a time-major batch by Newton iterations.

    Args:
      cell: any cell whose ``recurrent_step`` is differentiable (``jax.jacfwd``), real states.
      params: its parameters.
      xs: ``[T, B, I]`` inputs.
      initial_state: the state with a leading batch axis (leaves ``[B, ...]``).
      valid: optional ``[T, B]`` booleans; padded steps keep the state.
      config: the ``Newton`` options.
      reverse: run t = T-1, ..., 0 (states stay at the positions of their inputs).
      guess: optional warm start, laid out as the returned ``states`` (for example the states
        of the previous training step); the initial state repeated when None.

    Returns:
      ``NewtonResult(states, iterations, residual)``.
    """
    projected = cell.project_inputs(params, xs)
    num_steps, batch = xs.shape[:2]
    mask = jnp.ones((num_steps, batch), projected.dtype) if valid is None else valid
    mask = jnp.asarray(mask, projected.dtype)
    h0 = jax.vmap(lambda s: ravel_pytree(s)[0])(initial_state)
    _check_state(cell, h0, projected, params, mask)
    if guess is None:
        guess_flat = jnp.broadcast_to(h0, (num_steps, *h0.shape))
    else:
        guess_flat = jax.vmap(jax.vmap(lambda s: ravel_pytree(s)[0]))(guess)
    if reverse:
        projected, mask, guess_flat = projected[::-1], mask[::-1], guess_flat[::-1]
    states, iterations, residual = _solve(
        cell, config, params, projected, mask, h0, guess_flat.astype(h0.dtype)
    )
    if reverse:
        states = states[::-1]
    if config.verbose:
        jax.debug.print("newton: {} iterations, residual {}", iterations, residual)
    unravel = ravel_pytree(jax.tree.map(lambda s: s[0], initial_state))[1]
    return NewtonResult(jax.vmap(jax.vmap(unravel))(states), iterations, residual)


def newton_recurrence(
    cell: Cell, params, xs, initial_state, valid=None, *, config: Newton, reverse: bool = False
):
    """``scan_time_major`` by ``newton_states``: ``(outputs [T, B, O], final_state)``."""
    result = newton_states(cell, params, xs, initial_state, valid, config=config, reverse=reverse)
    states = result.states
    # The outputs are one more parallel step from the solved states (the previous ones).
    previous = jax.tree.map(
        lambda s, s0: (
            jnp.concatenate([s0[None], s[:-1]])
            if not reverse
            else jnp.concatenate([s[1:], s0[None]])
        ),
        states,
        initial_state,
    )
    projected = cell.project_inputs(params, xs)
    step = jax.vmap(jax.vmap(lambda s, p: cell.recurrent_step(params, s, p)[1]))
    outputs = step(previous, projected)
    if valid is not None:
        outputs = jnp.where(valid[..., None], outputs, jnp.zeros((), outputs.dtype))
    final = jax.tree.map(lambda s: s[0] if reverse else s[-1], states)
    return outputs, final


def _flat_step(cell: Cell, params, dtype):
    """``f(h [S], projected, mask) -> h' [S]`` on the flattened state of one example."""
    unravel = ravel_pytree(cell.initial_state(dtype))[1]

    def f(h, p, m):
        new_state, _ = cell.recurrent_step(params, unravel(h), p)
        return jnp.where(m > 0, ravel_pytree(new_state)[0].astype(h.dtype), h)

    return f


def _check_state(cell, h0, projected, params, mask) -> None:
    if jnp.issubdtype(h0.dtype, jnp.complexfloating):
        raise ValueError(f"backend='newton' runs real states, got {h0.dtype} from {cell!r}")
    f = _flat_step(cell, params, h0.dtype)
    try:
        jax.eval_shape(jax.jacfwd(f), h0[0], projected[0, 0], mask[0, 0])
    except Exception as error:  # what JAX raises for a step it cannot differentiate varies
        raise ValueError(
            f"backend='newton' needs a cell whose step is differentiable with jax.jacfwd; "
            f"{type(cell).__name__}'s fails with {type(error).__name__}"
        ) from error


def _shifted(hs, h0):
    """``[h0, h_0, ..., h_{T-2}]``: the state before each step."""
    return jnp.concatenate([h0[None], hs[:-1]])


def _batched(fn):
    return jax.vmap(jax.vmap(fn))


def _linear_solve(a, b, h0, full: bool):
    """States of ``h_t = a_t h_{t-1} + b_t`` (``a`` ``[T, B, S, S]`` full or ``[T, B, S]``)."""
    if not full:
        return linear_scan(a, b, h0)
    b = b.at[0].add(jnp.einsum("bij,bj->bi", a[0], h0))

    def combine(earlier, later):
        a1, b1 = earlier
        a2, b2 = later
        return a2 @ a1, jnp.einsum("...ij,...j->...i", a2, b1) + b2

    return jax.lax.associative_scan(combine, (a, b), axis=0)[1]


def _jacobian(f, full: bool):
    """``(J [S, S] or its diagonal [S], f(h))`` of one example's step."""

    def jac_and_value(h, p, m):
        jac, value = jax.jacfwd(lambda h: _twice(f(h, p, m)), has_aux=True)(h)
        return (jac if full else jnp.diagonal(jac)), value

    return jac_and_value


def _twice(y):
    return y, y


def _iterate(cell, config, params, projected, mask, h0, guess):
    f = _flat_step(cell, params, h0.dtype)
    full = not config.use_quasi(h0.shape[-1])
    jac_and_value = _batched(_jacobian(f, full))
    max_iters = projected.shape[0] if config.max_iters is None else config.max_iters
    shrink = 1.0 / (1.0 + config.damping)

    def cond(carry):
        _, k, residual = carry
        return (k < max_iters) & (residual > config.tol)

    def body(carry):
        hs, k, _ = carry
        previous = _shifted(hs, h0)
        jac, values = jac_and_value(previous, projected, mask)
        residual = jnp.max(jnp.abs(values - hs))
        jac = jac * shrink
        offsets = values - (jnp.einsum("tbij,tbj->tbi", jac, previous) if full else jac * previous)
        new = _linear_solve(jac, offsets, h0, full)
        go_on = residual > config.tol
        return jnp.where(go_on, new, hs), k + go_on.astype(jnp.int32), residual

    start = (guess, jnp.int32(0), jnp.asarray(jnp.inf, h0.real.dtype))
    hs, iterations, _ = jax.lax.while_loop(cond, body, start)
    values = _batched(f)(_shifted(hs, h0), projected, mask)
    return hs, iterations, jnp.max(jnp.abs(values - hs))


def _solve(cell, config, params, projected, mask, h0, guess):
    return _make_solver(cell, config)(params, projected, mask, h0, guess)


def _make_solver(cell, config):
    @jax.custom_vjp
    def solve(params, projected, mask, h0, guess):
        return _iterate(cell, config, params, projected, mask, h0, guess)

    def forward(params, projected, mask, h0, guess):
        out = _iterate(cell, config, params, projected, mask, h0, guess)
        return out, (params, projected, mask, h0, out[0])

    def backward(saved, cotangents):
        params, projected, mask, h0, hs = saved
        grad_states = cotangents[0]
        full = not config.use_quasi(h0.shape[-1])
        adjoint = _adjoint(cell, params, projected, mask, h0, hs, grad_states, full)

        def all_steps(params, previous, projected):
            return _batched(_flat_step(cell, params, h0.dtype))(previous, projected, mask)

        _, vjp = jax.vjp(all_steps, params, _shifted(hs, h0), projected)
        d_params, d_previous, d_projected = vjp(adjoint)
        return d_params, d_projected, jnp.zeros_like(mask), d_previous[0], jnp.zeros_like(hs)

    solve.defvjp(forward, backward)
    return solve


def _adjoint(cell, params, projected, mask, h0, hs, grad_states, full: bool):
    """``lambda_t = dL/dh_t + J_{t+1}^T lambda_{t+1}`` at the solution ``hs``."""
    f = _flat_step(cell, params, h0.dtype)
    previous = _shifted(hs, h0)
    if full:
        jac = _batched(lambda h, p, m: jax.jacfwd(f)(h, p, m))(previous, projected, mask)
        # lambda_t takes J_{t+1}^T; the last step's coefficient multiplies a zero state.
        later = jnp.concatenate([jnp.swapaxes(jac[1:], -1, -2), jnp.zeros_like(jac[:1])])
        return _linear_solve(later[::-1], grad_states[::-1], jnp.zeros_like(h0), True)[::-1]

    one_vjp = jax.vmap(lambda h, p, m, lam: jax.vjp(lambda h: f(h, p, m), h)[1](lam)[0])

    def back(carry, inputs):
        h_prev_next, p_next, m_next, g = inputs  # step t+1's inputs, dL/dh_t
        lam = g + one_vjp(h_prev_next, p_next, m_next, carry)
        return lam, lam

    zeros = jnp.zeros_like(h0)
    next_inputs = (
        jnp.concatenate([previous[1:], previous[:1]]),
        jnp.concatenate([projected[1:], projected[:1]]),
        jnp.concatenate([mask[1:], jnp.zeros_like(mask[:1])]),
        grad_states,
    )
    # At t = T-1 there is no step t+1: its mask 0 makes f the identity, J^T lambda = lambda = 0.
    _, lams = jax.lax.scan(back, zeros, next_inputs, reverse=True)
    return lams
