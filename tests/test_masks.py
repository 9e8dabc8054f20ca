"""Arbitrary masks and mid-sequence resets, on every cell and every backend that honours them.

The reference runs, for each row and direction, every segment between resets on its own from the
initial state, over that segment's valid steps only (compacted), as a Python loop of the cell's
``step`` (no scan, no mask, no resets), and scatters the outputs back: what a user would write by
hand. It runs eagerly (compiling its unrolled loop would cost more than running it). Values and
gradients (parameters, inputs, initial states) of the layers and of ``rnnjax.unroll`` must match.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import cells
from rnnjax.recurrence.backends import Backend, resolve_layer

B, T, IN = 3, 7, 3
TOL = dict(rtol=2e-5, atol=2e-6)

LAYERS = {
    "rnn_tanh": lambda **kw: rnnjax.RNN(4, **kw),
    "rnn_relu": lambda **kw: rnnjax.RNN(4, nonlinearity="relu", **kw),
    "lstm": lambda **kw: rnnjax.LSTM(4, **kw),
    "lstm_proj": lambda **kw: rnnjax.LSTM(4, proj_size=2, **kw),
    "gru": lambda **kw: rnnjax.GRU(4, **kw),
    "gru_reset_before": lambda **kw: rnnjax.GRU(4, reset_after=False, **kw),
    "layer_norm_lstm": lambda **kw: rnnjax.Stack(cell=cells.LayerNormLSTMCell(4), **kw),
}
NATIVE = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
FUSABLE = NATIVE + ["layer_norm_lstm"]


def _flags(seed, p):
    return np.random.default_rng(seed).random((B, T)) < p


# Row 0: left padding and one reset; row 1: random holes and resets (one at t=0, a no-op);
# row 2: random, with a segment that is entirely masked.
MASK = _flags(0, 0.7)
MASK[0, :2] = False
MASK[2, 3:5] = False
RESETS = _flags(1, 0.3)
RESETS[0] = [False, False, False, True, False, False, False]
RESETS[1, 0] = True
RESETS[2, 3:6] = [True, False, True]
ALL = np.ones((B, T), bool)
NONE = np.zeros((B, T), bool)


def _segments(resets):
    starts = [0] + [t for t in range(1, T) if resets[t]]
    return list(zip(starts, starts[1:] + [T], strict=True))


def _reference_direction(cell, params, xs, mask, resets, s0, reverse):
    """One row and direction: each segment's valid steps alone from ``s0``, plain unroll."""
    outputs = [jnp.zeros((cell.output_size,), xs.dtype)] * T
    finals = []
    for start, stop in _segments(resets):
        steps = [t for t in range(start, stop) if mask[t]]
        state = s0
        for t in reversed(steps) if reverse else steps:
            state, outputs[t] = cell.step(params, state, xs[t])
        finals.append(state)
    # Forward ends with the last segment; reversed, with the first (at position 0).
    return jnp.stack(outputs), finals[0] if reverse else finals[-1]


def _reference_layer(layer, params, x, s0, mask, resets):
    finals = []
    for first in range(0, len(params), layer.num_directions):
        outputs = []
        for direction in range(layer.num_directions):
            index = first + direction
            rows = [
                _reference_direction(
                    layer.cell,
                    params[index],
                    x[b],
                    mask[b],
                    resets[b],
                    jax.tree.map(lambda s, b=b, i=index: s[i, b], s0),
                    direction == 1,
                )
                for b in range(B)
            ]
            outputs.append(jnp.stack([out for out, _ in rows]))
            finals.append(jax.tree.map(lambda *s: jnp.stack(s), *[f for _, f in rows]))
        x = jnp.concatenate(outputs, axis=-1)
    return x, jax.tree.map(lambda *s: jnp.stack(s), *finals)


def _loss(outputs, state):
    # Weights that differ per position and per state leaf, so every cotangent path is exercised.
    return jnp.sum(jnp.sin(outputs)) + sum(jnp.sum(jnp.cos(s)) for s in jax.tree.leaves(state))


def _setup(layer):
    k_params, k_x, k_s = jax.random.split(jax.random.key(0), 3)
    params = layer.init(k_params, IN)
    # NaN where masked: the mask must keep it out of every output and gradient.
    x = jnp.where(MASK[..., None], jax.random.normal(k_x, (B, T, IN)), jnp.nan)
    s0 = jax.tree.map(lambda s: jax.random.normal(k_s, s.shape), layer.initial_state(B))
    return params, x, s0


@functools.cache
def _reference(name, num_layers, with_mask, with_resets):
    layer = LAYERS[name](num_layers=num_layers, bidirectional=True, backend="scan")
    mask, resets = MASK if with_mask else ALL, RESETS if with_resets else NONE

    def loss(params, x, s0):
        return _loss(*_reference_layer(layer, params, x, s0, mask, resets))

    params, x, s0 = _setup(layer)
    if not with_mask:
        x = jnp.nan_to_num(x)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(params, x, s0)


def _check_layer(name, backend, num_layers=1, with_mask=True, with_resets=True):
    layer = LAYERS[name](num_layers=num_layers, bidirectional=True, backend=backend)
    params, x, s0 = _setup(layer)
    if not with_mask:
        x = jnp.nan_to_num(x)
    flags = dict(mask=MASK if with_mask else None, resets=RESETS if with_resets else None)

    def loss(params, x, s0):
        return _loss(*layer(params, x, None, s0, **flags))

    got = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(params, x, s0)
    want = _reference(name, num_layers, with_mask, with_resets)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, **TOL), got, want)


@pytest.mark.parametrize("name", [name for name in LAYERS if name != "layer_norm_lstm"])
def test_scan_layer_matches_segments_run_alone(name):
    _check_layer(name, "scan")


@pytest.mark.parametrize("name", FUSABLE)
def test_fused_layer_matches_segments_run_alone(name):
    _check_layer(name, "fused")


@pytest.mark.parametrize("name", NATIVE)
def test_native_layer_honours_masks(name):
    _check_layer(name, "native", with_resets=False)


def test_native_masks_with_two_threads(monkeypatch):
    monkeypatch.setenv("RNNJAX_NATIVE_THREADS", "2")  # each thread runs 2 of the 4 units
    _check_layer("gru", "native", with_resets=False)


def test_two_layers_resets_only():
    _check_layer("lstm", "fused", num_layers=2, with_mask=False)


def test_mask_of_lengths_equals_lengths():
    layer = rnnjax.GRU(4, bidirectional=True, batch_first=False, backend="scan")
    params, x, s0 = _setup(layer)
    x = jnp.swapaxes(jnp.nan_to_num(x), 0, 1)
    lengths = np.array([7, 0, 3])
    mask = np.arange(T)[:, None] < lengths[None, :]  # time-major, as x
    got = layer(params, x, None, s0, mask=mask)
    want = layer(params, x, lengths, s0)
    jax.tree.map(lambda g, w: np.testing.assert_array_equal(g, w), got, want)


@pytest.mark.parametrize("backend,reverse", [("scan", True), ("fused", False)])
def test_unroll_matches_segments_run_alone(backend, reverse):
    cell = cells.LSTMCell(4)
    params = cell.init(jax.random.key(1), IN)
    xs = jax.random.normal(jax.random.key(2), (B, T, IN))
    s0 = jax.tree.map(
        lambda s: jax.random.normal(jax.random.key(3), (B, *s.shape)), cell.initial_state()
    )

    def loss(params, xs, s0):
        run = functools.partial(rnnjax.unroll, cell, params, reverse=reverse, backend=backend)
        outputs, state = jax.vmap(lambda x, s, m, r: run(x, s, mask=m, resets=r))(
            xs, s0, MASK, RESETS
        )
        return _loss(outputs, state)

    def reference(params, xs, s0):
        rows = [
            _reference_direction(
                cell,
                params,
                xs[b],
                MASK[b],
                RESETS[b],
                jax.tree.map(lambda s, b=b: s[b], s0),
                reverse,
            )
            for b in range(B)
        ]
        return _loss(jnp.stack([o for o, _ in rows]), [f for _, f in rows])

    grad = functools.partial(jax.value_and_grad, argnums=(0, 1, 2))
    got = jax.jit(grad(loss))(params, xs, s0)
    want = grad(reference)(params, xs, s0)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, **TOL), got, want)


def test_resolver_with_resets():
    lstm = cells.LSTMCell(4)
    assert resolve_layer("auto", lstm, with_resets=True, platform="cpu") is Backend.SCAN
    assert resolve_layer("auto", lstm, with_lengths=True, platform="cpu") is Backend.NATIVE
    assert resolve_layer("auto", lstm, with_resets=True, platform="gpu") is Backend.FUSED
    with pytest.raises(ValueError, match="backend='native' cannot run resets"):
        resolve_layer("native", lstm, with_resets=True, platform="cpu")
    with pytest.raises(ValueError, match="no lengths, mask or resets.*got resets"):
        resolve_layer("cudnn", lstm, with_resets=True, platform="gpu")


def test_bad_masks_and_resets():
    layer = rnnjax.LSTM(4, backend="scan")
    params = layer.init(jax.random.key(0), IN)
    x = jnp.ones((B, T, IN))
    with pytest.raises(ValueError, match=r"mask must have shape \[B, T\] = \(3, 7\), got \(7, 3\)"):
        layer(params, x, mask=MASK.T)
    with pytest.raises(
        ValueError, match=r"resets must have shape \[T, B\] = \(7, 3\), got \(3, 7\)"
    ):
        rnnjax.LSTM(4, batch_first=False)(params, jnp.swapaxes(x, 0, 1), resets=RESETS)
    with pytest.raises(ValueError, match="mask must have dtype bool .*got int32"):
        layer(params, x, mask=MASK.astype(np.int32))
    with pytest.raises(ValueError, match="resets must have dtype bool .*got float32"):
        layer(params, x, resets=RESETS.astype(np.float32))
    with pytest.raises(ValueError, match="pass lengths or mask, not both"):
        layer(params, x, np.full((B,), T), mask=MASK)
    with pytest.raises(ValueError, match="backend='native' cannot run resets"):
        rnnjax.LSTM(4, backend="native")(params, x, resets=RESETS)
    cell = cells.GRUCell(4)
    cell_params = cell.init(jax.random.key(0), IN)
    with pytest.raises(ValueError, match=r"mask must have shape \[T\] = \(7,\), got \(3, 7\)"):
        rnnjax.unroll(cell, cell_params, x[0], mask=MASK)
    with pytest.raises(ValueError, match="pass length or mask, not both"):
        rnnjax.unroll(cell, cell_params, x[0], length=3, mask=MASK[0])
    with pytest.raises(ValueError, match="resets must have dtype bool"):
        rnnjax.unroll(cell, cell_params, x[0], resets=np.zeros(T, np.int8))
