"""Layer regularisers: variational input/recurrent/output dropout, zoneout and DropConnect.

Masks are read back from what they leave behind (constant ratios over time, exactly-zero rows of
a gradient), then the layer is checked against a float64 NumPy loop that applies them.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import cells
from rnnjax.layers import _regularisers
from rnnjax.recurrence.backends import Backend, resolve_layer
from tests import reference

B, T, INPUT, H = 3, 5, 4, 6
TOL = dict(rtol=1e-5, atol=1e-6)
KEY = jax.random.key(42)


def _inputs(shape=(B, T, INPUT), seed=1):
    return jax.random.normal(jax.random.key(seed), shape)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_variational_dropout_masks_are_the_same_at_every_step_with_the_rate_dropped():
    x = jnp.ones((7, 400, 50))  # [T, B, F]
    y = _regularisers.variational_dropout(jax.random.key(0), 0.3, x)
    np.testing.assert_array_equal(y, jnp.broadcast_to(y[:1], y.shape))  # one mask for all T
    assert set(np.unique(np.asarray(y))) == {0.0, np.float32(1 / 0.7)}
    assert abs(float(jnp.mean(y[0] == 0)) - 0.3) < 0.01  # 20000 draws: std 0.003
    params = cells.LSTMCell(100).init(jax.random.key(1), 10)
    dropped = _regularisers.drop_connect(jax.random.key(2), 0.4, params)
    assert abs(float(jnp.mean(dropped.w_hh == 0)) - 0.4) < 0.01
    assert dropped.w_ih is params.w_ih and dropped.b_hh is params.b_hh


def test_input_and_output_dropout_use_one_mask_per_sequence():
    # An Elman layer without recurrence and with constant inputs: any change over time is a mask.
    layer = rnnjax.RNN(H, input_dropout=0.5, output_dropout=0.5)
    (p,) = layer.init(jax.random.key(0), INPUT)
    p = p._replace(w_hh=jnp.zeros_like(p.w_hh))
    x = jnp.broadcast_to(_inputs((B, 1, INPUT)), (B, T, INPUT))
    out, _ = layer((p,), x, dropout_key=KEY)
    np.testing.assert_array_equal(out, jnp.broadcast_to(out[:, :1], out.shape))
    # The output mask: zeros or the undropped output (of the dropped input) scaled by 2.
    keys = _regularisers.keys_for(KEY, 0, 0)
    x_in = np.asarray(x[:, 0], np.float64)
    keep_in = np.asarray(jax.random.bernoulli(keys.inputs, 0.5, (B, INPUT)))
    h = np.tanh((x_in * keep_in * 2) @ np.asarray(p.w_ih) + np.asarray(p.b_ih + p.b_hh))
    got = np.asarray(out[:, 0])
    dropped = got == 0
    assert 0 < dropped.sum() < dropped.size
    np.testing.assert_allclose(got[~dropped], 2 * h[~dropped], **TOL)


def _recurrent_grad(layer, params, x, key):
    loss = lambda p: jnp.sum(jnp.sin(layer(p, x, dropout_key=key)[0]))  # noqa: E731
    return jax.grad(loss)(params)[0]


def test_recurrent_dropout_drops_the_same_units_of_h_at_every_step_in_the_matmul_only():
    layer = rnnjax.LSTM(H, recurrent_dropout=0.5)
    params = layer.init(jax.random.key(3), INPUT)
    x = _inputs((1, T, INPUT))
    # dW_hh = sum_t (m * h_{t-1})^T dz_t: a dropped unit's row is zero over ALL steps together.
    key = jax.random.key(0)
    rows = np.abs(np.asarray(_recurrent_grad(layer, params, x, key).w_hh)).sum(axis=1)
    keep = rows > 0
    assert 0 < keep.sum() < H
    p = {
        k: None if v is None else np.asarray(v, np.float64) for k, v in params[0]._asdict().items()
    }
    h, c = np.zeros(H), np.zeros(H)
    want = []
    for t in range(T):  # the carried h and c are not dropped: only the matmul's input is
        z = np.asarray(x[0, t], np.float64) @ p["w_ih"] + p["b_ih"] + p["b_hh"]
        z = z + (h * keep * 2) @ p["w_hh"]
        i, f, g, o = np.split(z, 4)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        want.append(h)
    out, state = layer(params, x, dropout_key=key)
    np.testing.assert_allclose(out[0], np.stack(want), **TOL)
    np.testing.assert_allclose(state.cell[0, 0], c, **TOL)


def test_drop_connect_masks_w_hh_only_and_keeps_the_native_backend():
    layer = rnnjax.GRU(H, weight_dropout=0.5)
    params = layer.init(jax.random.key(4), INPUT)
    x = _inputs()
    assert resolve_layer(layer.backend, layer.cell, platform="cpu") is Backend.NATIVE
    assert not _regularisers.check_layer(layer).in_loop(training=True)
    keep = np.asarray(_recurrent_grad(layer, params, x, KEY).w_hh) != 0
    assert 0.3 < keep.mean() < 0.7
    masked = (params[0]._replace(w_hh=params[0].w_hh * keep * 2),)
    want, _ = rnnjax.GRU(H, backend="scan")(masked, x)
    got, _ = layer(params, x, dropout_key=KEY)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Another key, another mask (one per call); the same key, the same result.
    other, _ = layer(params, x, dropout_key=jax.random.key(7))
    assert not np.allclose(other, got)
    np.testing.assert_array_equal(layer(params, x, dropout_key=KEY)[0], got)


def test_zoneout_keeps_each_unit_or_takes_the_new_value_and_its_expectation_at_evaluation():
    layer = rnnjax.GRU(H, zoneout=0.4, backend="scan")
    params = layer.init(jax.random.key(5), INPUT)
    x = _inputs((50, T, INPUT))
    out, _ = layer(params, x, dropout_key=KEY)
    p = params[0]
    kept = []
    prev = np.zeros((50, H))
    for t in range(T):
        new = reference.gru_step(
            {k: np.asarray(v, np.float64) for k, v in p._asdict().items()},
            prev,
            np.asarray(x[:, t], np.float64),
            True,
        )
        got = np.asarray(out[:, t], np.float64)
        is_old, is_new = np.isclose(got, prev, atol=1e-6), np.isclose(got, new, atol=1e-5)
        assert np.all(is_old | is_new)
        kept.append(is_old & ~is_new)
        prev = got
    assert abs(np.mean(kept) - 0.4) < 0.05  # 1500 units x steps
    # Without a key: h_t = z h_{t-1} + (1 - z) h~_t, in float64.
    out, state = layer(params, x[:2])
    prev = np.zeros((2, H))
    for t in range(T):
        p64 = {k: np.asarray(v, np.float64) for k, v in p._asdict().items()}
        new = reference.gru_step(p64, prev, np.asarray(x[:2, t], np.float64), True)
        prev = 0.4 * prev + 0.6 * new
        np.testing.assert_allclose(out[:2, t], prev, **TOL)


def test_lstm_zoneout_rates_per_state_leaf_and_lengths_at_evaluation():
    layer = rnnjax.LSTM(H, zoneout=(0.1, 0.5))  # hidden, cell (Krueger et al.: 0.05, 0.5)
    params = layer.init(jax.random.key(6), INPUT)
    x = _inputs((2, T, INPUT))
    out, state = layer(params, x, jnp.array([T, 2]))
    p = {
        k: None if v is None else np.asarray(v, np.float64) for k, v in params[0]._asdict().items()
    }
    for b, n in enumerate([T, 2]):
        h, c = np.zeros(H), np.zeros(H)
        for t in range(n):
            h_new, c_new = reference.lstm_step(p, (h, c), np.asarray(x[b, t], np.float64))
            h, c = 0.1 * h + 0.9 * h_new, 0.5 * c + 0.5 * c_new
            np.testing.assert_allclose(out[b, t], h, **TOL)
        np.testing.assert_array_equal(out[b, n:], 0.0)
        np.testing.assert_allclose(state.cell[0, b], c, **TOL)


def test_no_key_no_effect_and_every_option_trains_bidirectional_with_remat():
    options = dict(input_dropout=0.3, recurrent_dropout=0.3, output_dropout=0.3, weight_dropout=0.3)
    plain = rnnjax.LSTM(H, num_layers=2, bidirectional=True, remat=True)  # both on the scan
    layer = rnnjax.LSTM(H, num_layers=2, bidirectional=True, remat=True, zoneout=0.2, **options)
    params = plain.init(jax.random.key(8), INPUT)
    x = _inputs()
    dropout_only = dataclasses.replace(layer, zoneout=0.0)
    for a, b in zip(jax.jit(plain)(params, x), jax.jit(dropout_only)(params, x), strict=True):
        jax.tree.map(np.testing.assert_array_equal, a, b)
    loss = lambda p, k: jnp.sum(layer(p, x, jnp.array([T, 3, 0]), dropout_key=k)[0] ** 2)  # noqa: E731
    value, grads = jax.jit(jax.value_and_grad(loss))(params, KEY)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert float(value) != float(jax.jit(loss)(params, jax.random.key(1)))


def test_zoo_cells_take_the_regularisers():
    x = _inputs()
    for cell in (cells.LayerNormLSTMCell(H), cells.PeepholeLSTMCell(H), cells.LayerNormGRUCell(H)):
        layer = rnnjax.Stack(cell=cell, recurrent_dropout=0.2, zoneout=0.1, weight_dropout=0.2)
        params = layer.init(jax.random.key(9), INPUT)
        out, _ = layer(params, x, dropout_key=KEY)
        assert out.shape == (B, T, H) and bool(jnp.all(jnp.isfinite(out)))
    layer = rnnjax.Stack(cell=cells.IndRNNCell(H), zoneout=0.1, weight_dropout=0.2)
    out, _ = layer(layer.init(jax.random.key(9), INPUT), x, dropout_key=KEY)
    assert bool(jnp.all(jnp.isfinite(out)))


@dataclasses.dataclass(frozen=True)
class _Stateless(cells.Cell):
    """A feed-forward 'cell' (no state): nothing for zoneout to keep."""

    hidden_size: int

    def init(self, key, input_size):
        return cells.CellParams(jnp.ones((input_size, self.hidden_size)), jnp.zeros((0, 0)))

    def initial_state(self, dtype=jnp.float32):
        return ()

    def project_inputs(self, params, x):
        return x @ params.w_ih

    def recurrent_step(self, params, state, projected):
        return state, projected


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(input_dropout=1.0), "input_dropout must be a rate in \\[0, 1\\), got 1.0"),
        (dict(recurrent_dropout=-0.1), "recurrent_dropout must be a rate in"),
        (dict(output_dropout="0.2"), "output_dropout must be a rate in"),
        (dict(weight_dropout=1.5), "weight_dropout must be a rate in"),
        (dict(zoneout=1.0), "zoneout must be a rate in"),
        (dict(zoneout=(0.1, 0.2, 0.3)), "zoneout must be one rate or 2"),
        (dict(zoneout=0.1, backend="native"), "only the scan runs: use backend='auto' or 'scan'"),
        (dict(recurrent_dropout=0.1, backend="fused"), "only the scan runs"),
        (dict(recurrent_dropout=0.1, proj_size=2), "recurrent_dropout needs a cell whose step"),
    ],
)
def test_bad_rates_and_combinations_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rnnjax.LSTM(H, **kwargs)


def test_bad_cells_for_zoneout_recurrent_and_weight_dropout():
    with pytest.raises(ValueError, match="zoneout needs a cell with a state to zone out"):
        rnnjax.Stack(cell=_Stateless(H), zoneout=0.1)
    with pytest.raises(ValueError, match="recurrent_dropout needs a cell"):
        rnnjax.Stack(cell=cells.IndRNNCell(H), recurrent_dropout=0.1)
    with pytest.raises(TypeError, match="zonout"):
        rnnjax.LSTM(H, zonout=0.1)
    layer = rnnjax.Stack(cell=cells.ElmanCell(H), weight_dropout=0.1)
    params = (dict(w_ih=jnp.ones((INPUT, H))),)
    with pytest.raises(ValueError, match="weight_dropout needs cell parameters with a w_hh"):
        _regularisers.drop_weights(_regularisers.keys_for(KEY, 0, 0), layer_rates(layer), params[0])


def layer_rates(layer):
    return _regularisers.check_layer(layer)


def test_char_lm_streams_zoneouts_expectation_as_its_layer_evaluates():
    from rnnjax.models import CharLM

    model = CharLM(11, hidden_size=8, embed_size=4, zoneout=0.3, weight_dropout=0.2)
    params = model.init(jax.random.key(0))
    tokens = jnp.array([[1, 4, 2, 9, 0]])
    logits, _ = model.apply(params, tokens)
    states = model.stream_state()
    for t in range(tokens.shape[1]):
        states, step_logits = model.step(params, states, tokens[0, t])
        np.testing.assert_allclose(step_logits, logits[0, t], rtol=1e-5, atol=1e-5)
