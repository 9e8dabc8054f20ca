"""The cuDNN backend against the plain scan: values and gradients.

On CPU the packing of parameters into cuDNN's flat layout and the layer wiring run with
``jax.experimental.rnn.lstm_ref`` in place of the cuDNN kernel. On a GPU the real kernel is
compared as well (``test_cudnn_kernel_matches_scan``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import cells
from rnnjax.recurrence.backends import Backend, _cudnn, resolve, resolve_layer

B, T, IN, H = 3, 5, 3, 4


def _loss(layer, params, x, s0, lengths):
    outputs, state = layer(params, x, lengths, s0)
    return jnp.sum(jnp.sin(outputs)) + sum(jnp.sum(jnp.cos(s)) for s in jax.tree.leaves(state))


def _values_and_grads(layer, params, x, s0, lengths):
    return jax.value_and_grad(_loss, argnums=(1, 2, 3))(layer, params, x, s0, lengths)


def _problem(layer):
    k_params, k_x, k_s = jax.random.split(jax.random.key(0), 3)
    params = layer.init(k_params, IN)
    x = jax.random.normal(k_x, (B, T, IN))
    s0 = jax.tree.map(lambda s: jax.random.normal(k_s, s.shape), layer.initial_state(B))
    return params, x, s0


@pytest.mark.parametrize("bidirectional,bias", [(True, True), (False, True), (True, False)])
def test_packed_layer_matches_scan(monkeypatch, bidirectional, bias):
    monkeypatch.setattr(_cudnn, "_cudnn_kernel", _cudnn.reference_kernel)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    options = dict(num_layers=2, bidirectional=bidirectional, bias=bias)
    scan = rnnjax.LSTM(H, backend="scan", **options)
    packed = rnnjax.LSTM(H, backend="cudnn", **options)
    params, x, s0 = _problem(scan)
    want = _values_and_grads(scan, params, x, s0, None)
    got = _values_and_grads(packed, params, x, s0, None)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6), got, want)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU with cuDNN")
@pytest.mark.parametrize("bidirectional", [False, True])
def test_cudnn_kernel_matches_scan(bidirectional):
    options = dict(num_layers=2, bidirectional=bidirectional)
    scan = rnnjax.LSTM(H, backend="scan", **options)
    fast = rnnjax.LSTM(H, backend="cudnn", **options)
    params, x, s0 = _problem(scan)
    want = _values_and_grads(scan, params, x, s0, None)
    got = jax.jit(_values_and_grads, static_argnums=0)(fast, params, x, s0, None)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5), got, want)


def test_auto_resolution():
    lstm = cells.LSTMCell(H)
    assert resolve_layer("auto", lstm, platform="gpu") is Backend.FUSED
    assert resolve_layer("auto", cells.GRUCell(H), platform="gpu") is Backend.FUSED
    assert resolve_layer("cudnn", lstm, platform="gpu") is Backend.CUDNN
    projected = cells.LSTMCell(H, proj_size=2)
    assert resolve_layer("auto", projected, platform="gpu") is Backend.SCAN
    assert resolve("auto", lstm, platform="gpu") is Backend.FUSED


def test_cudnn_refusals():
    with pytest.raises(ValueError, match="needs an LSTM without proj_size"):
        rnnjax.GRU(H, backend="cudnn")
    with pytest.raises(ValueError, match="needs an LSTM without proj_size"):
        rnnjax.LSTM(H, proj_size=2, backend="cudnn")
    with pytest.raises(ValueError, match="remat=False"):
        rnnjax.LSTM(H, remat=True, backend="cudnn")
    with pytest.raises(ValueError, match="float32 inputs, got bfloat16"):
        resolve_layer("cudnn", cells.LSTMCell(H), dtype=jnp.bfloat16, platform="gpu")
    with pytest.raises(ValueError, match="full-length batches only"):
        resolve_layer("cudnn", cells.LSTMCell(H), with_lengths=True, platform="gpu")
    with pytest.raises(ValueError, match="needs a GPU, but JAX runs on 'cpu'"):
        resolve_layer("cudnn", cells.LSTMCell(H), platform="cpu")
    with pytest.raises(ValueError, match="runs whole batches"):
        rnnjax.unroll(
            cells.LSTMCell(H),
            cells.LSTMCell(H).init(jax.random.key(0), IN),
            jnp.ones((T, IN)),
            backend="cudnn",
        )
