"""The zoo cells (LayerNorm LSTM/GRU, peephole LSTM, IndRNN, MGU) against float64 NumPy loops,
finite differences, the layers and the fused backend."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import rnnjax
from rnnjax import cells
from rnnjax.recurrence.backends import Backend, resolve_layer
from tests import reference_zoo

INPUT, STEPS = 3, 6
TOL = dict(rtol=1e-5, atol=1e-6)

CELLS = {
    "layer_norm_lstm": cells.LayerNormLSTMCell(4),
    "layer_norm_gru": cells.LayerNormGRUCell(4),
    "peephole": cells.PeepholeLSTMCell(4),
    "indrnn": cells.IndRNNCell(4),
    "indrnn_bounded": cells.IndRNNCell(4, nonlinearity="tanh", max_steps=3),
    "mgu": cells.MGUCell(4),
}
ONE_STATE_MATMUL = ("layer_norm_lstm", "layer_norm_gru", "peephole")
FUSABLE = ONE_STATE_MATMUL + ("mgu",)  # the MGU's (f*h) W_n is differentiated in the loop


def _setup(name, seed=0):
    cell = CELLS[name]
    k_params, k_x, k_noise = jax.random.split(jax.random.key(seed), 3)
    params = cell.init(k_params, INPUT)
    # Off the initial values (gains 1, u in the bound), so that every parameter matters.
    params = jax.tree.map(
        lambda p: p + 0.3 * jax.random.normal(jax.random.fold_in(k_noise, p.size), p.shape), params
    )
    xs = jax.random.normal(k_x, (STEPS, INPUT), jnp.float32)
    return cell, params, xs


def _leaves(state):
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("reverse,length", [(False, None), (True, 4)])
def test_unroll_matches_float64_loop(name, reverse, length):
    cell, params, xs = _setup(name)
    outputs, state = rnnjax.unroll(cell, params, xs, length=length, reverse=reverse)
    n = STEPS if length is None else length
    want_out, want_state = reference_zoo.run_sequence(
        cell, params, np.asarray(xs)[:n], reverse=reverse
    )
    np.testing.assert_allclose(outputs[:n], want_out, **TOL)
    np.testing.assert_array_equal(outputs[n:], 0.0)
    for got, want in zip(jax.tree.leaves(state), _leaves(want_state), strict=True):
        np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("name", CELLS)
def test_gradients_match_finite_differences(name):
    cell, params, xs = _setup(name, seed=1)
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
        xs64 = jnp.asarray(xs, jnp.float64)

        def loss(params, xs):
            outputs, state = rnnjax.unroll(cell, params, xs, length=5)
            return jnp.sum(jnp.sin(outputs)) + sum(jnp.sum(s**2) for s in jax.tree.leaves(state))

        check_grads(jax.jit(loss), (params64, xs64), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", CELLS)
def test_bidirectional_stack_with_lengths_matches_each_sequence(name):
    cell = CELLS[name]
    layer = rnnjax.Stack(cell=cell, num_layers=2, bidirectional=True)
    params = layer.init(jax.random.key(2), INPUT)
    xs = jax.random.normal(jax.random.key(3), (2, STEPS, INPUT))
    lengths = np.array([STEPS, 3])
    outputs, _ = jax.jit(layer)(params, xs, lengths)
    for b, n in enumerate(lengths):
        seq = np.asarray(xs[b, :n], np.float64)
        for i in range(2):
            fwd, _ = reference_zoo.run_sequence(cell, params[2 * i], seq)
            bwd, _ = reference_zoo.run_sequence(cell, params[2 * i + 1], seq, reverse=True)
            seq = np.concatenate([fwd, bwd], axis=-1)
        np.testing.assert_allclose(outputs[b, :n], seq, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(outputs[b, n:], 0.0)


@pytest.mark.parametrize("name", FUSABLE)
def test_fused_backend_and_remat_give_the_scan_values_and_gradients(name):
    cell = CELLS[name]
    scan = rnnjax.Stack(cell=cell, backend="scan")
    params = scan.init(jax.random.key(4), INPUT)
    xs = jax.random.normal(jax.random.key(5), (3, STEPS, INPUT))
    lengths = jnp.array([STEPS, 2, 0])

    def loss(layer, params):
        out, state = layer(params, xs, lengths)
        return jnp.sum(out**2) + sum(jnp.sum(s) for s in jax.tree.leaves(state))

    want = jax.value_and_grad(lambda p: loss(scan, p))(params)
    for layer in (rnnjax.Stack(cell=cell, backend="fused"), rnnjax.Stack(cell=cell, remat=True)):
        got = jax.value_and_grad(lambda p, layer=layer: loss(layer, p))(params)
        chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", CELLS)
def test_auto_picks_fused_on_gpu_only_for_fusable_cells_and_the_scan_on_cpu(name):
    cell = CELLS[name]
    on_gpu = resolve_layer("auto", cell, platform="gpu")
    assert on_gpu is (Backend.FUSED if name in ONE_STATE_MATMUL else Backend.SCAN)
    assert resolve_layer("auto", cell, platform="cpu") is Backend.SCAN
    with pytest.raises(ValueError, match="backend='native'"):
        rnnjax.Stack(cell=cell, backend="native")
    if name not in FUSABLE:
        with pytest.raises(ValueError, match="backend='fused' needs a fusable cell"):
            rnnjax.Stack(cell=cell, backend="fused")


@pytest.mark.parametrize("name", CELLS)
def test_a_few_training_steps_lower_the_loss(name):
    layer = rnnjax.Stack(cell=CELLS[name])
    params = layer.init(jax.random.key(6), INPUT)
    xs = jax.random.normal(jax.random.key(7), (4, STEPS, INPUT))
    target = jnp.cumsum(xs[..., :1], axis=1) / STEPS  # a running mean: needs memory

    def loss(params):
        out, _ = layer(params, xs)
        return jnp.mean((out[..., :1] - target) ** 2)

    optimiser = optax.adam(0.05)

    @jax.jit
    def train_step(params, opt_state):
        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = optimiser.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, value

    opt_state = optimiser.init(params)
    params, opt_state, first = train_step(params, opt_state)
    for _ in range(15):
        params, opt_state, _ = train_step(params, opt_state)
    assert loss(params) < 0.5 * first


def test_indrnn_clips_its_recurrent_weights_in_the_step():
    cell = cells.IndRNNCell(3, nonlinearity="tanh", max_steps=10)
    assert cell.bound == pytest.approx(2 ** (1 / 10))
    params = cell.init(jax.random.key(0), 2)
    assert float(jnp.max(jnp.abs(params.w_hh))) <= cell.bound
    params = params._replace(w_hh=jnp.array([3.0, -3.0, 0.5]))
    xs = jax.random.normal(jax.random.key(1), (4, 2))
    out, _ = rnnjax.unroll(cell, params, xs)
    want, _ = rnnjax.unroll(
        cells.IndRNNCell(3, nonlinearity="tanh"),
        params._replace(w_hh=jnp.array([2**0.1, -(2**0.1), 0.5])),
        xs,
    )
    np.testing.assert_allclose(out, want, rtol=1e-4)
    grads = jax.grad(lambda p: jnp.sum(rnnjax.unroll(cell, p, xs)[0]))(params)
    assert grads.w_hh[0] == 0.0 and grads.w_hh[1] == 0.0 and grads.w_hh[2] != 0.0


def test_bad_zoo_options_name_the_argument():
    with pytest.raises(ValueError, match="max_steps or recurrent_bound, not both"):
        cells.IndRNNCell(3, max_steps=5, recurrent_bound=1.0)
    with pytest.raises(ValueError, match="recurrent_bound must be a positive number"):
        cells.IndRNNCell(3, recurrent_bound=-1.0)
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        cells.IndRNNCell(3, nonlinearity="gelu")
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        cells.LayerNormLSTMCell(0)
    with pytest.raises(ValueError, match="recurrent_init must be one of"):
        cells.MGUCell(3, recurrent_init="zeros").init(jax.random.key(0), 2)
