"""Inverted dropout for the models' dense parts (embeddings, read-outs, Transformer blocks)."""

import jax
import jax.numpy as jnp


def dropout(key, rate: float, x):
    """``x`` with each element zeroed with probability ``rate`` and the rest scaled by
    ``1/(1-rate)``; unchanged when ``key`` is None (evaluation) or ``rate`` is 0."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)
