"""Every backend and layout option against the plain scan: values and gradients.

The fused backend (``rnnjax.recurrence.backends._fused_vjp``) replaces JAX's derivative of the
scan by a hand-written one, so its gradients w.r.t. parameters, inputs and initial states are
compared with the plain scan's over lengths (with empty and full sequences), reverse,
bidirectional stacks and remat.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import cells
from rnnjax.recurrence.backends import Backend, resolve

B, T, IN = 3, 5, 3
LENGTHS = np.array([5, 0, 2])
TOL = dict(rtol=2e-5, atol=2e-6)

LAYERS = {
    "lstm": lambda **kw: rnnjax.LSTM(4, **kw),
    "lstm_nobias": lambda **kw: rnnjax.LSTM(4, bias=False, **kw),
    "gru": lambda **kw: rnnjax.GRU(4, **kw),
    "gru_nobias": lambda **kw: rnnjax.GRU(4, bias=False, **kw),
    "rnn_tanh": lambda **kw: rnnjax.RNN(4, **kw),
    "rnn_relu": lambda **kw: rnnjax.RNN(4, nonlinearity="relu", **kw),
    # Fusable with a second matmul inside pointwise_step (differentiated step by step).
    "lstm_proj": lambda **kw: rnnjax.LSTM(4, proj_size=2, **kw),
    "gru_reset_before": lambda **kw: rnnjax.GRU(4, reset_after=False, **kw),
    "mgu": lambda **kw: rnnjax.Stack(cell=cells.MGUCell(4), **kw),
}


def _loss(layer, params, x, s0, lengths):
    outputs, state = layer(params, x, lengths, s0)
    # Weights that differ per position and per state leaf, so every cotangent path is exercised.
    return jnp.sum(jnp.sin(outputs)) + sum(jnp.sum(jnp.cos(s)) for s in jax.tree.leaves(state))


def _values_and_grads(layer, params, x, s0, lengths):
    grad = jax.value_and_grad(_loss, argnums=(1, 2, 3))
    return jax.jit(grad, static_argnums=0)(layer, params, x, s0, lengths)


def _assert_trees_close(got, want):
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, **TOL), got, want)


@pytest.mark.parametrize(
    "name,hoist,remat,num_layers",
    [(name, False, False, 1) for name in LAYERS]
    + [("lstm", True, False, 2), ("gru", True, True, 1), ("lstm", False, True, 1)]
    + [("lstm_proj", True, True, 2), ("gru_reset_before", True, False, 2)],
)
def test_fused_layer_matches_scan(name, hoist, remat, num_layers):
    options = dict(num_layers=num_layers, bidirectional=True, hoist_inputs=hoist, remat=remat)
    scan, fused = LAYERS[name](backend="scan", **options), LAYERS[name](backend="fused", **options)
    k_params, k_x, k_s = jax.random.split(jax.random.key(0), 3)
    params = scan.init(k_params, IN)
    x = jax.random.normal(k_x, (B, T, IN))
    s0 = jax.tree.map(lambda s: jax.random.normal(k_s, s.shape), scan.initial_state(B))
    lengths = None if name == "rnn_relu" else LENGTHS  # one case without padding
    want = _values_and_grads(scan, params, x, s0, lengths)
    _assert_trees_close(_values_and_grads(fused, params, x, s0, lengths), want)


@pytest.mark.parametrize("hoist", [False, True])
def test_time_major_layer_matches_vmapped_unroll(hoist):
    layer = rnnjax.GRU(4, hoist_inputs=hoist, batch_first=False)
    params = layer.init(jax.random.key(0), IN)
    x = jax.random.normal(jax.random.key(1), (T, B, IN))
    outputs, state = layer(params, x, LENGTHS)
    run = lambda xs, n: rnnjax.unroll(layer.cell, params[0], xs, length=n)  # noqa: E731
    want_out, want_state = jax.vmap(run, in_axes=(1, 0), out_axes=(1, 0))(x, LENGTHS)
    np.testing.assert_allclose(outputs, want_out, **TOL)
    np.testing.assert_allclose(state[0], want_state, **TOL)


@pytest.mark.parametrize(
    "cell,reverse,hoist",
    [("lstm", False, True), ("lstm", True, False), ("gru", True, True), ("rnn", False, False)],
)
def test_fused_unroll_matches_scan(cell, reverse, hoist):
    cell = {"lstm": cells.LSTMCell(4), "gru": cells.GRUCell(4), "rnn": cells.ElmanCell(4)}[cell]
    params = cell.init(jax.random.key(0), IN)
    xs = jax.random.normal(jax.random.key(1), (T, IN))
    s0 = jax.tree.map(lambda s: s + 0.5, cell.initial_state())

    def loss(backend, params, xs, s0):
        outputs, state = rnnjax.unroll(
            cell, params, xs, s0, length=3, reverse=reverse, hoist_inputs=hoist, backend=backend
        )
        return jnp.sum(jnp.sin(outputs)) + sum(jnp.sum(jnp.cos(s)) for s in jax.tree.leaves(state))

    grad = jax.jit(jax.value_and_grad(loss, argnums=(1, 2, 3)), static_argnums=0)
    _assert_trees_close(grad("fused", params, xs, s0), grad("scan", params, xs, s0))


@dataclasses.dataclass(frozen=True)
class _CustomStepLSTM(cells.LSTMCell):
    def recurrent_step(self, params, state, projected):
        return super().recurrent_step(params, state, 2.0 * projected)


def test_resolver():
    assert resolve("auto", cells.LSTMCell(4), platform="cpu") is Backend.SCAN
    assert resolve(Backend.FUSED, cells.GRUCell(4)) is Backend.FUSED
    assert resolve("auto", cells.GRUCell(4), platform="gpu") is Backend.FUSED
    two_matmuls = (
        cells.LSTMCell(4, proj_size=2),
        cells.GRUCell(4, reset_after=False),
        cells.MGUCell(4),
    )
    for cell in two_matmuls:
        # Fused by name; AUTO keeps the scan (not measured on a GPU); the native kernels run
        # the projected LSTM and the reset-before GRU (tests/test_native.py), not the MGU.
        assert cell.fusable and not cell.one_state_matmul
        assert resolve("auto", cell, platform="gpu") is Backend.SCAN
        assert resolve("fused", cell) is Backend.FUSED
        if isinstance(cell, cells.MGUCell):
            with pytest.raises(ValueError, match="backend='native' runs the built-in LSTMCell"):
                rnnjax.Stack(cell=cell, backend="native")
        else:
            rnnjax.Stack(cell=cell, backend="native")
    with pytest.raises(ValueError, match="cudnn' needs an LSTM without proj_size"):
        rnnjax.LSTM(4, proj_size=2, backend="cudnn")
    with pytest.raises(ValueError, match="recurrent_dropout needs .* no other matmul"):
        rnnjax.GRU(4, reset_after=False, recurrent_dropout=0.1)
    # A subclass with its own step no longer matches pointwise_step, so it is not fusable.
    assert cells.LSTMCell(4).fusable and not _CustomStepLSTM(4).fusable
    with pytest.raises(ValueError, match="backend must be one of"):
        rnnjax.LSTM(4, backend="cudnn_rnn")
    with pytest.raises(ValueError, match="fusable"):
        rnnjax.Stack(cell=cells.IndRNNCell(4, max_steps=10), backend="fused")
