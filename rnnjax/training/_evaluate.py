"""Evaluation: mask-weighted sums per batch, divided once at the end of the loop."""

import math
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnjax._shapes import Array, Float, Int


def masked_sums(
    logits: Float[Array, "B T V"], targets: Int[Array, "B T"], mask: Float[Array, "B T"]
) -> dict:
    """Sums over real tokens (``mask`` 1) of the cross-entropy, of correct argmax, and their count.

    Averaging sums rather than per-batch means weights every real token equally, whatever the
    padding of each batch.
    """
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    return {
        "loss": jnp.sum(nll * mask),
        "correct": jnp.sum(correct * mask),
        "count": jnp.sum(mask),
    }


def evaluate(eval_step: Callable, params, batches: Iterable, carry=()) -> dict:
    """Runs ``eval_step`` over ``batches`` and returns token-weighted means.

    Args:
      eval_step: ``eval_step(params, carry, batch) -> (carry, sums)`` with ``sums`` as from
        ``masked_sums``; the carry is passed from each batch to the next (``()`` for none).
      params: model parameters.
      batches: iterable of batches.
      carry: the initial carry.

    Returns:
      ``{"loss": nats per token, "bits_per_token", "accuracy", "tokens"}``, means over real
      tokens (sums accumulated in float64 on the host).
    """
    totals = {"loss": 0.0, "correct": 0.0, "count": 0.0}
    for batch in batches:
        carry, sums = eval_step(params, carry, batch)
        for name, value in jax.device_get(sums).items():
            totals[name] += float(np.asarray(value, np.float64))
    count = totals["count"]
    if count == 0:
        raise ValueError("evaluation saw no real tokens (every mask was 0)")
    loss = totals["loss"] / count
    return {
        "loss": loss,
        "bits_per_token": loss / math.log(2.0),
        "accuracy": totals["correct"] / count,
        "tokens": count,
    }
