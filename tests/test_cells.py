"""Cells and ``rnnjax.unroll`` against the float64 NumPy loop, finite differences and each other."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnnjax
from rnnjax import cells
from tests import reference

INPUT, STEPS = 3, 6

CELLS = {
    "rnn_tanh": cells.ElmanCell(5),
    "rnn_relu": cells.ElmanCell(5, nonlinearity="relu"),
    "rnn_nobias": cells.ElmanCell(5, bias=False),
    "lstm": cells.LSTMCell(5),
    "lstm_nobias": cells.LSTMCell(5, bias=False),
    "lstm_proj": cells.LSTMCell(5, proj_size=2),
    "lstm_forget_bias": cells.LSTMCell(5, forget_bias=1.0),
    "gru": cells.GRUCell(5),
    "gru_nobias": cells.GRUCell(5, bias=False),
    "gru_reset_before": cells.GRUCell(5, reset_after=False),
    "gru_reset_before_nobias": cells.GRUCell(5, reset_after=False, bias=False),
}


def _setup(name, seed=0):
    cell = CELLS[name]
    k_params, k_x = jax.random.split(jax.random.key(seed))
    params = cell.init(k_params, INPUT)
    xs = jax.random.normal(k_x, (STEPS, INPUT), jnp.float32)
    return cell, params, xs


def _assert_state_close(state, expected, **tol):
    expected = list(expected) if isinstance(expected, tuple) else [expected]
    got = jax.tree.leaves(state)
    assert len(got) == len(expected)
    for g, want in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, want, **tol)


TOL = dict(rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "name,reverse,length,hoist",
    list(itertools.product(CELLS, [False, True], [None, 0, 4], [True, False])),
)
def test_unroll_matches_float64_loop(name, reverse, length, hoist):
    cell, params, xs = _setup(name)
    outputs, state = rnnjax.unroll(
        cell, params, xs, length=length, reverse=reverse, hoist_inputs=hoist
    )
    n = STEPS if length is None else length
    want_out, want_state = reference.run_sequence(cell, params, np.asarray(xs)[:n], reverse=reverse)
    np.testing.assert_allclose(outputs[:n], want_out, **TOL)
    np.testing.assert_array_equal(outputs[n:], 0.0)
    _assert_state_close(state, want_state, **TOL)


@pytest.mark.parametrize("name", CELLS)
def test_unroll_from_initial_state(name):
    cell, params, xs = _setup(name)
    s0 = jax.tree.map(lambda s: jax.random.normal(jax.random.key(7), s.shape), cell.initial_state())
    outputs, state = rnnjax.unroll(cell, params, xs, s0)
    s0_ref = tuple(np.asarray(s) for s in s0) if isinstance(s0, tuple) else np.asarray(s0)
    want_out, want_state = reference.run_sequence(cell, params, np.asarray(xs), s0_ref)
    np.testing.assert_allclose(outputs, want_out, **TOL)
    _assert_state_close(state, want_state, **TOL)


@pytest.mark.parametrize("name", CELLS)
def test_step_repeated_equals_unroll(name):
    cell, params, xs = _setup(name)
    state = cell.initial_state()
    step = jax.jit(cell.step)
    outputs = []
    for x in xs:
        state, out = step(params, state, x)
        outputs.append(out)
    want_out, want_state = rnnjax.unroll(cell, params, xs)
    np.testing.assert_allclose(jnp.stack(outputs), want_out, **TOL)
    chex.assert_trees_all_close(state, want_state, **TOL)


@pytest.mark.parametrize("name", CELLS)
def test_gradients_match_finite_differences(name):
    cell, params, xs = _setup(name, seed=1)
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
        xs64 = jnp.asarray(xs, jnp.float64)

        def loss(params, xs):
            outputs, state = rnnjax.unroll(cell, params, xs, length=5)
            return jnp.sum(jnp.sin(outputs)) + sum(jnp.sum(s**2) for s in jax.tree.leaves(state))

        check_grads(jax.jit(loss), (params64, xs64), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    "name,option", list(itertools.product(["lstm", "gru", "rnn_tanh"], ["remat", "unroll"]))
)
def test_remat_and_unroll_give_same_values_and_gradients(name, option):
    cell, params, xs = _setup(name)
    kwargs = {"remat": True} if option == "remat" else {"unroll": 4}

    def loss(params, xs, **kw):
        outputs, _ = rnnjax.unroll(cell, params, xs, length=5, reverse=True, **kw)
        return jnp.sum(outputs**2), outputs

    (l0, out0), g0 = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, xs)
    (l1, out1), g1 = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, xs, **kwargs)
    np.testing.assert_allclose(out1, out0, **TOL)
    chex.assert_trees_all_close(g1, g0, rtol=1e-5, atol=1e-6)


def test_vmap_over_several_batch_axes_equals_loop():
    cell, params, _ = _setup("lstm")
    xs = jax.random.normal(jax.random.key(3), (2, 3, STEPS, INPUT))
    lengths = jnp.array([[6, 0, 2], [1, 5, 6]])
    run = lambda x, n: rnnjax.unroll(cell, params, x, length=n)  # noqa: E731
    outputs, state = jax.jit(jax.vmap(jax.vmap(run)))(xs, lengths)
    for a, b in itertools.product(range(2), range(3)):
        want_out, want_state = run(xs[a, b], lengths[a, b])
        np.testing.assert_allclose(outputs[a, b], want_out, **TOL)
        np.testing.assert_allclose(state.cell[a, b], want_state.cell, **TOL)


class TestInitialisation:
    def test_default_is_torch_uniform(self):
        params = cells.LSTMCell(64).init(jax.random.key(0), 32)
        bound = 1 / np.sqrt(64)
        for leaf in jax.tree.leaves(params):
            assert np.abs(leaf).max() <= bound
            assert np.abs(leaf).max() > 0.9 * bound  # uses the range, not a narrower one

    def test_orthogonal_recurrent_blocks(self):
        params = cells.GRUCell(8, recurrent_init="orthogonal").init(jax.random.key(0), 4)
        for block in jnp.split(params.w_hh, 3, axis=1):
            np.testing.assert_allclose(block.T @ block, np.eye(8), atol=1e-5)

    def test_glorot_input_and_callable(self):
        cell = cells.ElmanCell(
            8, input_init="glorot_uniform", recurrent_init=jax.nn.initializers.zeros
        )
        params = cell.init(jax.random.key(0), 4)
        assert np.abs(params.w_ih).max() <= np.sqrt(6 / (4 + 8))
        np.testing.assert_array_equal(params.w_hh, 0.0)

    def test_forget_bias_sets_total_forget_bias(self):
        params = cells.LSTMCell(4, forget_bias=1.0).init(jax.random.key(0), 3)
        np.testing.assert_allclose((params.b_ih + params.b_hh)[4:8], 1.0)

    def test_same_key_same_params(self):
        a = cells.LSTMCell(4, proj_size=2).init(jax.random.key(5), 3)
        b = cells.LSTMCell(4, proj_size=2).init(jax.random.key(5), 3)
        jax.tree.map(np.testing.assert_array_equal, a, b)
