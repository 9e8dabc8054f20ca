"""SequenceClassifier: each pooling against NumPy on unpadded sequences, padding invariance,
empty sequences, PyTorch's h_n for bidirectional ``last`` pooling, and argument checks."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax.models import POOLINGS, SequenceClassifier

LENGTHS = np.array([5, 1, 3, 0, 4])
T = 6


def _model(pooling, **kwargs):
    layer = rnnjax.LSTM(7, 2, bidirectional=True)
    return SequenceClassifier(
        layer, 3, vocab_size=11, embed_size=4, pooling=pooling, head_sizes=(5,), **kwargs
    )


def _tokens(seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 11, size=(len(LENGTHS), T)).astype(np.int32)
    return np.where(np.arange(T)[None, :] < LENGTHS[:, None], tokens, 0)


def _numpy_pool(model, params, outputs, pooling):
    """Pooling of one unpadded sequence's outputs ``[n, F]`` in float64 NumPy."""
    outputs = np.asarray(outputs, np.float64)
    features = outputs.shape[-1]
    if len(outputs) == 0:
        return np.zeros(features)
    if pooling == "last":
        h = model.layer.hidden_size
        return np.concatenate([outputs[-1, :h], outputs[0, h:]])  # forward end, backward start
    if pooling == "mean":
        return outputs.mean(0)
    if pooling == "max":
        return outputs.max(0)
    w, b, v = (np.asarray(a, np.float64) for a in params.attention)
    scores = np.tanh(outputs @ w + b) @ v
    weights = np.exp(scores - scores.max())
    return (weights / weights.sum()) @ outputs


def _numpy_head(params, pooled):
    for i, (w, b) in enumerate(params.head):
        pooled = pooled @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
        if i < len(params.head) - 1:
            pooled = np.maximum(pooled, 0.0)
    return pooled


@pytest.mark.parametrize("pooling", POOLINGS)
def test_pooling_matches_numpy_on_each_unpadded_sequence(pooling):
    model = _model(pooling)
    params = model.init(jax.random.key(0))
    tokens = _tokens()
    logits = model.apply(params, tokens, LENGTHS)
    for i, n in enumerate(LENGTHS):
        x = params.embed[tokens[i : i + 1, :n]]
        outputs = model.layer(params.rnn, x)[0][0] if n else np.zeros((0, model.features))
        expected = _numpy_head(params, _numpy_pool(model, params, outputs, pooling))
        np.testing.assert_allclose(logits[i], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_padding_changes_neither_logits_nor_gradients(pooling):
    model = _model(pooling, dropout=0.3)
    params = model.init(jax.random.key(1))
    clean = _tokens()
    noisy = np.where(np.arange(T)[None, :] < LENGTHS[:, None], clean, 9)
    key = jax.random.key(2)

    def loss(p, tokens):
        logits = model.apply(p, tokens, LENGTHS, dropout_key=key)
        return jnp.sum(jnp.sin(logits)), logits

    (_, logits_a), grads_a = jax.value_and_grad(loss, has_aux=True)(params, clean)
    (_, logits_b), grads_b = jax.value_and_grad(loss, has_aux=True)(params, noisy)
    np.testing.assert_allclose(logits_a, logits_b, rtol=1e-6, atol=1e-6)
    for a, b in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert np.all(np.isfinite(a))  # the empty sequence included


def test_bidirectional_last_pooling_is_torchs_h_n_of_the_last_layer():
    torch = pytest.importorskip("torch")
    import rnnjax.interop.torch as rt

    layer = rnnjax.LSTM(7, 2, bidirectional=True)
    model = SequenceClassifier(layer, 3, vocab_size=11, embed_size=4, pooling="last")
    params = model.init(jax.random.key(3))
    tokens = _tokens()
    lengths = np.maximum(LENGTHS, 1)  # pack_padded_sequence refuses empty sequences
    module = rt.to_torch(model.layer, params.rnn)
    x = torch.from_numpy(np.asarray(params.embed[tokens]))
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        x, torch.from_numpy(lengths), batch_first=True, enforce_sorted=False
    )
    with torch.no_grad():
        _, (h_n, _) = module(packed)
    pooled = torch.cat([h_n[-2], h_n[-1]], dim=-1).numpy()
    w, b = params.head[0]
    np.testing.assert_allclose(
        model.apply(params, tokens, lengths), pooled @ np.asarray(w) + np.asarray(b), rtol=1e-5,
        atol=1e-5,
    )  # fmt: skip


def test_dense_inputs_and_any_recurrent_stack():
    model = SequenceClassifier(rnnjax.GRU(6), 4, input_size=3, pooling="mean")
    params = model.init(jax.random.key(4))
    x = jax.random.normal(jax.random.key(5), (2, 5, 3))
    logits = model.apply(params, x, jnp.array([5, 2]))
    assert logits.shape == (2, 4) and params.embed is None
    np.testing.assert_allclose(logits[1], model.apply(params, x[1:, :2])[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pooling": "sum"}, "pooling must be one of"),
        ({"vocab_size": None}, "give exactly one of vocab_size"),
        ({"input_size": 3}, "give exactly one of vocab_size"),
        ({"num_classes": 0}, "num_classes must be a positive int, got 0"),
        ({"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
        ({"layer": "lstm"}, "layer must be an rnnjax.Recurrent, got str"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    args = {"layer": rnnjax.LSTM(4), "num_classes": 2, "vocab_size": 5, **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        SequenceClassifier(**args)


def test_word_dropout_replaces_tokens_by_unk_only_with_a_key():
    plain, dropping = _model("mean"), _model("mean", word_dropout=0.999, unk_id=1)
    params = plain.init(jax.random.key(6))
    tokens = _tokens()
    np.testing.assert_array_equal(
        dropping.apply(params, tokens, LENGTHS), plain.apply(params, tokens, LENGTHS)
    )
    all_unk = np.ones_like(tokens)
    np.testing.assert_allclose(
        dropping.apply(params, tokens, LENGTHS, dropout_key=jax.random.key(7)),
        plain.apply(params, all_unk, LENGTHS),
        rtol=1e-6,
        atol=1e-6,
    )
