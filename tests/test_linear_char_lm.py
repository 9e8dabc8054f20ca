"""Char-LMs of linear recurrences (cell="mingru", "minlstm", "lru"): training, streaming."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnjax.models import CharLM


@pytest.mark.parametrize("name", ["mingru", "lru"])
def test_char_lm_streams_what_it_trains_on(name):
    model = CharLM(7, name, hidden_size=4, num_layers=2, embed_size=3)
    params = model.init(jax.random.key(0))
    tokens = jnp.array([[1, 4, 2, 6, 0]])
    logits, _ = model.apply(params, tokens)  # AUTO: the associative scan
    states, streamed = model.stream_state(), []
    for token in tokens[0]:
        states, step_logits = model.step(params, states, token)
        streamed.append(step_logits)
    np.testing.assert_allclose(logits[0], jnp.stack(streamed), rtol=1e-5, atol=1e-6)
