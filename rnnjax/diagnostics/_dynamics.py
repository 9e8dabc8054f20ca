"""The recurrence as a dynamical system: step Jacobians, their norms, Lyapunov exponents.

The step ``s_t = F(s_{t-1}, x_t)`` of a cell has the Jacobian ``J_t = ds_t/ds_{t-1}`` (the whole
state flattened: ``[h, c]`` for the LSTM). Gradients flowing back k steps are multiplied by
``J_{t+1}^T ... J_{t+k}^T``: spectral norms below 1 along a trajectory make them vanish, above 1
can make them explode. The largest Lyapunov exponent, the mean log growth rate of that product,
summarises it in one number (below 0: perturbations, and memories, decay).
"""

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from rnnjax._shapes import Array, Float
from rnnjax.cells import Cell


def step_jacobians(
    cell: Cell, params, xs: Float[Array, "T I"], initial_state=None
) -> tuple[Float[Array, "T S S"], Float[Array, "T S"]]:
    """The Jacobians ``ds_t/ds_{t-1}`` along the trajectory of one example (``jax.jacfwd``).

    Args:
      cell: any cell.
      params: its parameters.
      xs: ``[T, I]`` inputs of one example.
      initial_state: the state before the first step; the cell's zero state when None.

    Returns:
      ``(jacobians [T, S, S], states [T, S])`` with S the flattened state's size (the leaves of
      the state in pytree order, e.g. LSTM ``[hidden, cell]``): ``jacobians[t][i, j]`` is
      ``d s_t[i] / d s_{t-1}[j]``, ``states[t]`` the state after step t.
    """
    state0 = cell.initial_state(jnp.result_type(xs)) if initial_state is None else initial_state
    flat0, unravel = ravel_pytree(state0)

    def step(flat, projected):
        return ravel_pytree(cell.recurrent_step(params, unravel(flat), projected)[0])[0]

    def body(flat, projected):
        return step(flat, projected), (jax.jacfwd(step)(flat, projected), step(flat, projected))

    _, (jacobians, states) = jax.lax.scan(body, flat0, cell.project_inputs(params, xs))
    return jacobians, states


def spectral_norms(jacobians: Float[Array, "T S S"]) -> Float[Array, " T"]:
    """The largest singular value of each Jacobian."""
    return jnp.linalg.norm(jacobians, ord=2, axis=(-2, -1))


def lyapunov_exponents(jacobians: Float[Array, "T S S"], num: int | None = None):
    """The ``num`` largest Lyapunov exponents (per step, natural log) by the QR method.

    Q_0 = I[:, :num]; each step factors ``J_t Q_{t-1} = Q_t R_t``, and the exponents are the
    means over t of ``log |diag R_t|``: the growth rates of a ``num``-dimensional volume of
    perturbations carried along the trajectory, kept orthogonal so that the smaller directions
    are not swamped by the largest (Benettin et al. 1980). For a linear map ``J`` they tend to
    the logs of ``|eigenvalues(J)|`` as T grows.

    Args:
      jacobians: ``[T, S, S]`` from ``step_jacobians``.
      num: how many exponents; all S when None.

    Returns:
      ``[num]`` exponents, largest first.
    """
    size = jacobians.shape[-1]
    num = size if num is None else num
    if not 1 <= num <= size:
        raise ValueError(f"num must be in [1, {size}] (the state size), got {num!r}")

    def body(q, jacobian):
        q, r = jnp.linalg.qr(jacobian @ q)
        return q, jnp.log(jnp.abs(jnp.diagonal(r)))

    q0 = jnp.eye(size, num, dtype=jacobians.dtype)
    _, logs = jax.lax.scan(body, q0, jacobians)
    return jnp.sort(jnp.mean(logs, axis=0))[::-1]
