"""Tests of rnnjax.models.CharLM: the streaming step agrees with the batched layer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnjax.models import CharLM


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_streaming_step_matches_teacher_forced_apply(cell):
    model = CharLM(vocab_size=11, cell=cell, hidden_size=8, num_layers=2, embed_size=5)
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 7), 0, 11)
    logits, _ = jax.jit(model.apply)(params, tokens)
    assert logits.shape == (2, 7, 11)
    step = jax.jit(model.step)
    for b in range(2):
        states = model.stream_state()
        for t in range(7):
            states, step_logits = step(params, states, tokens[b, t])
            np.testing.assert_allclose(step_logits, logits[b, t], rtol=1e-5, atol=1e-5)


def test_carried_state_continues_the_sequence():
    model = CharLM(vocab_size=7, cell="lstm", hidden_size=6, num_layers=2, embed_size=4)
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (3, 10), 0, 7)
    apply = jax.jit(model.apply)
    whole, _ = apply(params, tokens)
    first, state = apply(params, tokens[:, :4])
    second, _ = apply(params, tokens[:, 4:], state)
    np.testing.assert_allclose(jnp.concatenate([first, second], 1), whole, rtol=1e-5, atol=1e-6)


def test_dropout_only_with_a_key():
    model = CharLM(vocab_size=7, hidden_size=6, num_layers=2, embed_size=4, dropout=0.5)
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    tokens = jnp.zeros((2, 5), jnp.int32)
    apply = jax.jit(model.apply)
    plain, _ = apply(params, tokens)
    np.testing.assert_array_equal(plain, apply(params, tokens)[0])
    dropped, _ = apply(params, tokens, dropout_key=jax.random.PRNGKey(3))
    assert not np.allclose(plain, dropped)


def test_sample_is_deterministic_in_range_and_follows_a_learned_peak():
    model = CharLM(vocab_size=5, cell="gru", hidden_size=4, embed_size=3)
    params = jax.jit(model.init)(jax.random.PRNGKey(0))
    sample = jax.jit(model.sample, static_argnums=3)
    a = sample(params, jax.random.PRNGKey(1), jnp.array([0, 1]), 20, 1.0)
    b = sample(params, jax.random.PRNGKey(1), jnp.array([0, 1]), 20, 1.0)
    assert a.shape == (20,) and a.min() >= 0 and a.max() < 5
    np.testing.assert_array_equal(a, b)
    peaked = params._replace(b_out=jnp.array([0.0, 0.0, 50.0, 0.0, 0.0]))
    np.testing.assert_array_equal(sample(peaked, jax.random.PRNGKey(1), jnp.array([0]), 6, 1.0), 2)


@pytest.mark.parametrize("cell", ["rnn", "gru"])
def test_bfloat16_rounds_the_recurrent_matmuls_and_streams_as_it_applies(cell):
    kwargs = dict(vocab_size=11, cell=cell, hidden_size=16, num_layers=2, embed_size=5)
    exact, mixed = CharLM(**kwargs), CharLM(**kwargs, precision="bfloat16")
    params = jax.jit(exact.init)(jax.random.PRNGKey(0))
    assert jax.tree.structure(params) == jax.tree.structure(mixed.init(jax.random.PRNGKey(0)))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (2, 9), 0, 11)
    want, _ = jax.jit(exact.apply)(params, tokens)
    logits, _ = jax.jit(mixed.apply)(params, tokens)
    # bf16 keeps 8 bits of mantissa: the logits move by about 2^-8 of their size, not 0.
    error = float(jnp.max(jnp.abs(logits - want)))
    assert 1e-5 < error < 5e-2, error
    step = jax.jit(mixed.step)
    states = mixed.stream_state()
    for t in range(9):
        states, step_logits = step(params, states, tokens[0, t])
        np.testing.assert_allclose(step_logits, logits[0, t], rtol=2e-2, atol=2e-2)


def test_invalid_configuration_is_rejected():
    with pytest.raises(ValueError, match="cell must be one of"):
        CharLM(vocab_size=5, cell="transformer")
    with pytest.raises(ValueError, match="hidden_size must be a positive int"):
        CharLM(vocab_size=5, hidden_size=0)
    with pytest.raises(ValueError, match="precision must be one of"):
        CharLM(vocab_size=5, precision="float16")
    with pytest.raises(ValueError, match="precision='bfloat16' needs cell in"):
        CharLM(vocab_size=5, cell="mingru", precision="bfloat16")
