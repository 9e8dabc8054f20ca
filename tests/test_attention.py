"""Attention against a float64 NumPy reference, with masks: padding gets exactly zero weight."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnjax.models import ATTENTION_KINDS, Attention, masked_softmax


def _reference(kind, params, query, memory, length):
    """The textbook scores in float64, softmax over the first ``length`` positions only."""
    p = {k: None if v is None else np.asarray(v, np.float64) for k, v in params._asdict().items()}
    q, h = np.asarray(query, np.float64), np.asarray(memory, np.float64)
    if kind == "dot":
        scores = h @ q
    elif kind == "general":  # q^T W_a h_j with W_a = w_memory^T
        scores = np.array([q @ p["w_memory"].T @ h_j for h_j in h])
    else:  # v^T tanh(W q + U h_j + b), concat's W_a [q; h_j] split in the same two blocks
        scores = np.array([p["v"] @ np.tanh(q @ p["w_query"] + h_j @ p["w_memory"] + p["bias"])
                           for h_j in h])  # fmt: skip
    weights = np.zeros(len(h))
    if length:
        e = np.exp(scores[:length] - scores[:length].max())
        weights[:length] = e / e.sum()
    return weights @ h, weights


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
@pytest.mark.parametrize("length", [0, 1, 7])
def test_matches_numpy_reference_with_mask(kind, length):
    q_size, m_size = (5, 5) if kind == "dot" else (5, 6)
    attention = Attention(kind, q_size, m_size, attention_size=3)
    params = attention.init(jax.random.key(0))
    query = jax.random.normal(jax.random.key(1), (q_size,))
    memory = jax.random.normal(jax.random.key(2), (7, m_size))
    mask = jnp.arange(7) < length
    context, weights = attention(params, query, memory, mask)
    want_context, want_weights = _reference(kind, params, query, memory, length)
    np.testing.assert_allclose(weights, want_weights, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(context, want_context, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(weights)[length:] == 0.0)  # exactly zero, not just small
    if length:
        np.testing.assert_allclose(np.sum(weights), 1.0, rtol=1e-6)


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_padding_content_changes_nothing_and_gets_no_gradient(kind):
    attention = Attention(kind, 4, 4)
    params = attention.init(jax.random.key(0))
    query = jax.random.normal(jax.random.key(1), (4,))
    memory = jax.random.normal(jax.random.key(2), (6, 4))
    mask = jnp.arange(6) < 3
    garbage = memory.at[3:].set(1e4 * jax.random.normal(jax.random.key(3), (3, 4)))

    def loss(memory, query):
        context, weights = attention(params, query, memory, mask)
        return jnp.sum(context**2) + jnp.sum(weights * jnp.arange(6.0))

    np.testing.assert_allclose(loss(memory, query), loss(garbage, query), rtol=1e-6)
    grad_memory, grad_query = jax.grad(loss, argnums=(0, 1))(garbage, query)
    assert np.all(np.asarray(grad_memory)[3:] == 0.0)
    assert np.all(np.isfinite(grad_query))


def test_keys_precomputed_once_give_the_same_result():
    attention = Attention("bahdanau", 3, 5, attention_size=4)
    params = attention.init(jax.random.key(0))
    memory = jax.random.normal(jax.random.key(1), (6, 5))
    query = jax.random.normal(jax.random.key(2), (3,))
    keys = attention.keys(params, memory)
    assert keys.shape == (6, 4)
    np.testing.assert_allclose(
        attention(params, query, memory, keys=keys)[0], attention(params, query, memory)[0]
    )


def test_masked_softmax_all_masked_is_zero_not_nan():
    weights = masked_softmax(jnp.array([1.0, 2.0, 3.0]), jnp.zeros(3, bool))
    np.testing.assert_array_equal(weights, np.zeros(3))
    grad = jax.grad(lambda s: jnp.sum(masked_softmax(s, jnp.zeros(3, bool))))(jnp.ones(3))
    assert np.all(np.isfinite(grad))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "additive", "query_size": 2, "memory_size": 2}, "kind must be one of"),
        ({"kind": "dot", "query_size": 2, "memory_size": 3}, "query_size == memory_size"),
        ({"kind": "general", "query_size": 0, "memory_size": 3}, "query_size must be"),
    ],
)
def test_bad_configuration_is_one_line_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Attention(**kwargs)
