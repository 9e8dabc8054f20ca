"""Stacked and bidirectional layers against running each example unpadded in the NumPy reference."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from tests import reference

B, T, IN = 4, 5, 3
LENGTHS = np.array([5, 2, 0, 1])  # unsorted, with an empty and a full sequence
TOL = dict(rtol=1e-5, atol=1e-6)

LAYERS = {
    "rnn_tanh": lambda **kw: rnnjax.RNN(4, **kw),
    "rnn_relu": lambda **kw: rnnjax.RNN(4, nonlinearity="relu", **kw),
    "lstm": lambda **kw: rnnjax.LSTM(4, **kw),
    "lstm_proj": lambda **kw: rnnjax.LSTM(4, proj_size=3, **kw),
    "gru": lambda **kw: rnnjax.GRU(4, **kw),
    "gru_nobias": lambda **kw: rnnjax.GRU(4, bias=False, **kw),
}


def _make(name, num_layers, bidirectional, seed=0):
    layer = LAYERS[name](num_layers=num_layers, bidirectional=bidirectional)
    k_params, k_x, k_s = jax.random.split(jax.random.key(seed), 3)
    params = layer.init(k_params, IN)
    x = jax.random.normal(k_x, (B, T, IN))
    s0 = jax.tree.map(lambda s: jax.random.normal(k_s, s.shape), layer.initial_state(B))
    return layer, params, x, s0


def _assert_final_states(layer, state, finals):
    leaves = jax.tree.leaves(state)
    for i, b in itertools.product(range(len(finals)), range(B)):
        want = finals[i][b] if isinstance(finals[i][b], tuple) else (finals[i][b],)
        for leaf, w in zip(leaves, want, strict=True):
            np.testing.assert_allclose(leaf[i, b], w, **TOL)


@pytest.mark.parametrize(
    "name,num_layers,bidirectional,with_state",
    list(itertools.product(LAYERS, [1, 2], [False, True], [False, True])),
)
def test_layer_matches_each_sequence_run_alone(name, num_layers, bidirectional, with_state):
    layer, params, x, s0 = _make(name, num_layers, bidirectional)
    s0 = s0 if with_state else None
    outputs, state = jax.jit(layer)(params, x, LENGTHS, s0)
    ref_s0 = None if s0 is None else jax.tree.map(np.asarray, s0)
    want_out, finals = reference.run_layer(layer, params, np.asarray(x), LENGTHS, ref_s0)
    assert outputs.shape == (B, T, layer.output_size)
    np.testing.assert_allclose(outputs, want_out, **TOL)
    _assert_final_states(layer, state, finals)
    # The empty sequence keeps its initial state.
    want_empty = layer.initial_state(B) if s0 is None else s0
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[:, 2], b[:, 2]), state, want_empty)


@pytest.mark.parametrize("name", ["lstm_proj", "gru"])
def test_time_major_equals_batch_first(name):
    layer, params, x, s0 = _make(name, 2, True)
    time_major = LAYERS[name](num_layers=2, bidirectional=True, batch_first=False)
    out_bf, state_bf = layer(params, x, LENGTHS, s0)
    out_tm, state_tm = time_major(params, jnp.swapaxes(x, 0, 1), LENGTHS, s0)
    np.testing.assert_allclose(jnp.swapaxes(out_tm, 0, 1), out_bf, **TOL)
    chex.assert_trees_all_close(state_tm, state_bf, **TOL)


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh"])
def test_padding_changes_nothing_at_valid_positions(name):
    layer, params, x, s0 = _make(name, 2, True)
    padded = jnp.concatenate([x, 100.0 * jnp.ones((B, 3, IN))], axis=1)
    weights = jax.random.normal(jax.random.key(9), (B, T, layer.output_size))

    def loss(params, x):
        outputs, state = layer(params, x, LENGTHS, s0)
        value = jnp.sum(outputs[:, :T] * weights)
        return value + sum(jnp.sum(jnp.tanh(s)) for s in jax.tree.leaves(state)), (outputs, state)

    grad_fn = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))
    (g_params, g_x), (out, state) = grad_fn(params, x)
    (g_params_p, g_x_p), (out_p, state_p) = grad_fn(params, padded)
    np.testing.assert_allclose(out_p[:, :T], out, **TOL)
    np.testing.assert_array_equal(out_p[:, T:], 0.0)
    chex.assert_trees_all_close(state_p, state, **TOL)
    chex.assert_trees_all_close(g_params_p, g_params, **TOL)
    np.testing.assert_allclose(g_x_p[:, :T], g_x, **TOL)
    np.testing.assert_array_equal(g_x_p[:, T:], 0.0)


def test_dropout_only_between_layers_and_only_with_a_key():
    key = jax.random.key(4)
    deep = rnnjax.GRU(6, num_layers=2, dropout=0.5)
    params = deep.init(jax.random.key(0), IN)
    x = jax.random.normal(jax.random.key(1), (B, T, IN))
    without_key, _ = deep(params, x)
    no_dropout, _ = rnnjax.GRU(6, num_layers=2)(params, x)
    np.testing.assert_array_equal(without_key, no_dropout)

    with_key, state = deep(params, x, dropout_key=key)
    # The same computation written out: layer 0, a kept/dropped mask scaled by 1/(1-p), layer 1.
    one = rnnjax.GRU(6)
    hidden, h0 = one(params[:1], x)
    keep = jax.random.bernoulli(jax.random.fold_in(key, 0), 0.5, hidden.shape)
    expected, h1 = one(params[1:], jnp.where(keep, hidden / 0.5, 0.0))
    np.testing.assert_allclose(with_key, expected, **TOL)
    np.testing.assert_allclose(state, jnp.concatenate([h0, h1]), **TOL)
    assert not np.allclose(with_key, no_dropout)

    shallow = rnnjax.GRU(6, dropout=0.5)  # one layer: nothing to drop between
    np.testing.assert_array_equal(shallow(params[:1], x, dropout_key=key)[0], hidden)


def test_jit_grad_vmap_compose_and_compile_once():
    layer, params, x, _ = _make("lstm", 2, True)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def loss(params, x, lengths):
        outputs, (h, c) = layer(params, x, lengths)
        return jnp.mean(outputs**2) + jnp.mean(h) + jnp.mean(c)

    grads = jax.grad(loss)(params, x, LENGTHS)
    for seed in range(3):
        jax.grad(loss)(params, x + seed, jnp.asarray(LENGTHS) - 0)  # no new trace
    with jax.disable_jit():
        eager = loss(params, x, LENGTHS)
    np.testing.assert_allclose(loss(params, x, LENGTHS), eager, rtol=1e-6)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))

    # vmap over an extra leading axis of independent batches.
    xs = jnp.stack([x, -x])
    out, _ = jax.vmap(lambda x: layer(params, x, LENGTHS))(xs)
    np.testing.assert_allclose(out[1], layer(params, -x, LENGTHS)[0], **TOL)


def test_layer_is_a_static_jit_argument():
    assert hash(rnnjax.LSTM(8, 2)) == hash(rnnjax.LSTM(8, 2))
    assert rnnjax.LSTM(8, 2) != rnnjax.LSTM(8, 2, bidirectional=True)
    layer, params, x, _ = _make("gru", 1, False)
    apply = jax.jit(lambda layer, params, x: layer(params, x)[0], static_argnums=0)
    np.testing.assert_allclose(apply(layer, params, x), layer(params, x)[0], **TOL)


@pytest.mark.parametrize(
    "option", [{"remat": True}, {"unroll": 3}, {"hoist_inputs": False}, {"hoist_inputs": True}]
)
def test_layer_options_give_same_values_and_gradients(option):
    layer, params, x, s0 = _make("lstm_proj", 2, True)
    assert layer.hoist_inputs is None  # the platform's default, one of the two compared below
    other = rnnjax.LSTM(4, num_layers=2, bidirectional=True, proj_size=3, **option)

    def loss(layer, params):
        outputs, state = layer(params, x, LENGTHS, s0)
        return jnp.sum(outputs**2) + jnp.sum(state.cell)

    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=1), static_argnums=0)
    (l0, g0), (l1, g1) = value_and_grad(layer, params), value_and_grad(other, params)
    np.testing.assert_allclose(l1, l0, rtol=1e-5)
    chex.assert_trees_all_close(g1, g0, rtol=1e-5, atol=1e-6)


def test_init_shapes_follow_torch_layout():
    layer = rnnjax.LSTM(6, num_layers=2, bidirectional=True, proj_size=2)
    params = layer.init(jax.random.key(0), 5)
    assert len(params) == 4
    assert params[0].w_ih.shape == (5, 24) and params[0].w_hh.shape == (2, 24)
    assert params[2].w_ih.shape == (4, 24)  # layer 1 sees both directions' projected outputs
    assert params[3].w_hr.shape == (6, 2)
    h, c = layer.initial_state(3)
    assert h.shape == (4, 3, 2) and c.shape == (4, 3, 6)
