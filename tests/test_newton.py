"""The NEWTON backend (DEER, quasi-DEER) against the sequential scan: values, gradients, options."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import cells
from rnnjax.recurrence import scan_time_major
from rnnjax.recurrence.backends import Newton, newton_states

INPUT, STEPS, BATCH = 3, 7, 2
TOL = dict(rtol=1e-5, atol=1e-5)

CONFIGS = {
    "deer": Newton(quasi=False),
    "quasi": Newton(quasi=True),
    "damped": Newton(quasi=True, damping=0.5),
}


def _setup(cell, seed=0):
    k_p, k_x, k_h = jax.random.split(jax.random.key(seed), 3)
    params = cell.init(k_p, INPUT)
    xs = jax.random.normal(k_x, (STEPS, BATCH, INPUT))
    h0 = jax.tree.map(
        lambda s: 0.5 * jax.random.normal(k_h, (BATCH, *s.shape)), cell.initial_state()
    )
    return params, xs, h0


def _run(cell, backend, reverse=False):
    lengths = jnp.array([STEPS, 4])

    @jax.jit
    def loss_and_outputs(params, xs, h0):
        outputs, state = scan_time_major(
            cell, params, xs, h0, lengths, reverse=reverse, backend=backend
        )
        loss = jnp.sum(jnp.sin(outputs)) + sum(jnp.sum(s**2) for s in jax.tree.leaves(state))
        return loss, (outputs, state)

    return jax.value_and_grad(loss_and_outputs, argnums=(0, 1, 2), has_aux=True)


def _assert_close(got, want):
    def one(g, w):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(w))) + 1e-6)

    jax.tree.map(one, got, want)


@pytest.mark.parametrize(
    "cell,config,reverse",
    [
        (cells.GRUCell(4), "deer", False),
        (cells.GRUCell(4), "quasi", True),
        (cells.LSTMCell(3), "deer", True),
        (cells.LSTMCell(3), "damped", False),
    ],
    ids=["gru-deer", "gru-quasi-reverse", "lstm-deer-reverse", "lstm-damped"],
)
def test_values_and_implicit_gradients_equal_the_scan(cell, config, reverse):
    params, xs, h0 = _setup(cell)
    (_, (out_n, state_n)), grads_n = _run(cell, CONFIGS[config], reverse)(params, xs, h0)
    (_, (out_s, state_s)), grads_s = _run(cell, "scan", reverse)(params, xs, h0)
    np.testing.assert_allclose(out_n, out_s, **TOL)
    _assert_close(state_n, state_s)
    _assert_close(grads_n, grads_s)


def test_iterations_residual_and_warm_start():
    cell = cells.GRUCell(4)
    params, xs, h0 = _setup(cell, seed=1)
    solve = jax.jit(
        lambda guess, config: newton_states(cell, params, xs, h0, config=config, guess=guess),
        static_argnums=1,
    )
    cold = solve(None, Newton(quasi=False, tol=1e-6))
    assert 1 <= int(cold.iterations) <= STEPS and float(cold.residual) <= 1e-6
    # Started from the solution, Newton has nothing to do.
    warm = solve(cold.states, Newton(quasi=False, tol=1e-6))
    assert int(warm.iterations) == 0
    np.testing.assert_allclose(warm.states, cold.states)
    # One iteration from the initial state makes the first step exact, not the last ones.
    one = solve(None, Newton(quasi=True, max_iters=1))
    assert int(one.iterations) == 1 and float(one.residual) > 1e-3
    _, steps = rnnjax.unroll(cell, params, xs[0, 0][None], h0[0])
    np.testing.assert_allclose(one.states[0, 0], steps, rtol=1e-6)


def test_layer_takes_the_options_object():
    layer = rnnjax.GRU(4, bidirectional=True, backend=Newton(tol=1e-6))
    params = layer.init(jax.random.key(0), INPUT)
    x = jax.random.normal(jax.random.key(1), (BATCH, STEPS, INPUT))
    lengths = jnp.array([STEPS, 3])
    out_n, h_n = jax.jit(layer.__call__)(params, x, lengths)
    scan = rnnjax.GRU(4, bidirectional=True, backend="scan")
    out_s, h_s = jax.jit(scan.__call__)(params, x, lengths)
    np.testing.assert_allclose(out_n, out_s, **TOL)
    np.testing.assert_allclose(h_n, h_s, **TOL)


class _NotDifferentiable(cells.ElmanCell):
    """An Elman cell whose step has a custom VJP only: forward-mode (``jacfwd``) cannot run it."""

    def recurrent_step(self, params, state, projected):
        @jax.custom_vjp
        def tanh(z):
            return jnp.tanh(z)

        tanh.defvjp(lambda z: (jnp.tanh(z), z), lambda z, g: (g / jnp.cosh(z) ** 2,))
        h = tanh(projected + state @ params.w_hh)
        return h, h


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="tol must be a number > 0"):
        Newton(tol=0.0)
    with pytest.raises(ValueError, match="max_iters must be a positive int"):
        Newton(max_iters=0)
    with pytest.raises(ValueError, match="damping must be a number >= 0"):
        Newton(damping=-1.0)
    xs = jnp.ones((3, 2))
    lru = cells.LRUCell(2)
    with pytest.raises(ValueError, match="backend='newton' runs real states, got complex64"):
        rnnjax.unroll(lru, lru.init(jax.random.key(0), 2), xs, backend="newton")
    bad = _NotDifferentiable(2)
    with pytest.raises(ValueError, match="backend='newton' needs a cell whose step is differen"):
        rnnjax.unroll(bad, bad.init(jax.random.key(0), 2), xs, backend="newton")
    with pytest.raises(ValueError, match="backend must be one of"):
        rnnjax.GRU(4, backend="deer")
