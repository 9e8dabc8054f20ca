"""Greedy decoding and temperature / top-k sampling, jit-compiled, stopping when all rows end.

Every decoder in ``rnnjax.decoding`` drives a ``step_fn`` of this form, for N rows at once::

    step_fn(params, memory, state, tokens [N]) -> (state, logits [N, V])

``params`` and ``memory`` (anything fixed per example, e.g. ``Seq2Seq.encode``'s memory; may be
None) are passed through; ``state`` is a pytree with leading axis N. ``step_fn`` is a static
argument of the jitted function: pass the same callable (e.g. a model's bound method) to reuse
the compilation, and keep arrays in ``params``, ``memory`` and ``state``. Shapes: B rows, L the
maximum length, V the vocabulary.
"""

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._shapes import Array, Float, Int, PRNGKeyArray

StepFn = Callable  # (params, memory, state, tokens [N]) -> (state, logits [N, V])


class Decoded(NamedTuple):
    """Output sequences of greedy decoding or sampling.

    Attributes:
      tokens: ``[B, L]`` ids; EOS at ``lengths`` (when < L) and EOS after it.
      lengths: ``[B]`` tokens before EOS (L when no EOS came).
      log_probs: ``[B]`` the model's log-probability of the sequence, EOS included (the
        unscaled model, whatever the temperature).
    """

    tokens: Int[Array, "B L"]
    lengths: Int[Array, " B"]
    log_probs: Float[Array, " B"]


def batch_size(state) -> int:
    leaves = jax.tree.leaves(state)
    if not leaves:
        raise ValueError("state must hold at least one array with a leading batch axis, got none")
    return leaves[0].shape[0]


def check_lengths(bos_id, eos_id, max_length) -> None:
    checks = (("bos_id", bos_id, 0), ("eos_id", eos_id, 0), ("max_length", max_length, 1))
    for name, value, low in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def _decode(step_fn, params, memory, state, choose, *, bos_id, eos_id, max_length) -> Decoded:
    """The shared loop: ``choose(i, logits [B, V]) -> tokens [B]`` picks each step's tokens."""
    rows = batch_size(state)

    def cond(carry):
        i, _, _, _, finished, _, _ = carry
        return (i < max_length) & ~jnp.all(finished)

    def body(carry):
        i, state, tokens, last, finished, lengths, log_probs = carry
        state, logits = step_fn(params, memory, state, last)
        logits = logits.astype(jnp.float32)
        token = jnp.where(finished, eos_id, choose(i, logits)).astype(jnp.int32)
        token_lp = jnp.take_along_axis(jax.nn.log_softmax(logits), token[:, None], axis=1)[:, 0]
        log_probs = log_probs + jnp.where(finished, 0.0, token_lp)
        tokens = jax.lax.dynamic_update_slice(tokens, token[:, None], (0, i))
        lengths = lengths + (~finished & (token != eos_id)).astype(jnp.int32)
        return i + 1, state, tokens, token, finished | (token == eos_id), lengths, log_probs

    carry = (
        jnp.int32(0),
        state,
        jnp.full((rows, max_length), eos_id, jnp.int32),
        jnp.full((rows,), bos_id, jnp.int32),
        jnp.zeros((rows,), bool),
        jnp.zeros((rows,), jnp.int32),
        jnp.zeros((rows,), jnp.float32),
    )
    _, _, tokens, _, _, lengths, log_probs = jax.lax.while_loop(cond, body, carry)
    return Decoded(tokens, lengths, log_probs)


@functools.partial(jax.jit, static_argnames=("step_fn", "bos_id", "eos_id", "max_length"))
def greedy(
    step_fn: StepFn, params, memory, state, *, bos_id: int, eos_id: int, max_length: int
) -> Decoded:
    """Greedy decoding: the most likely token at every step, until EOS or ``max_length``.

    Args:
      step_fn: see the module docstring (static).
      params, memory: passed to ``step_fn`` unchanged.
      state: the decoder's initial state, leaves ``[B, ...]``.
      bos_id: the first input token.
      eos_id: the end token; a row stops once it is emitted (the loop once all rows have).
      max_length: L, the most tokens generated per row, EOS included.

    Returns:
      ``Decoded``.
    """
    check_lengths(bos_id, eos_id, max_length)
    choose = lambda i, logits: argmax(logits)  # noqa: E731
    return _decode(
        step_fn, params, memory, state, choose, bos_id=bos_id, eos_id=eos_id, max_length=max_length
    )


def argmax(logits: Float[Array, "B V"]) -> Int[Array, " B"]:
    """``jnp.argmax`` over the last axis (first index of the maximum), as a max and a min.

    XLA on CPU lowers ``argmax`` to a variadic (value, index) reduction that is about twice as
    slow as these two plain reductions; in greedy decoding it ran once per step over ``[B, V]``.
    """
    vocab = logits.shape[-1]
    top = jnp.max(logits, axis=-1, keepdims=True)
    index = jnp.min(jnp.where(logits == top, jnp.arange(vocab)[None, :], vocab), axis=-1)
    return jnp.minimum(index, vocab - 1)  # NaN logits: stay a valid id


def top_k_logits(logits: Float[Array, "B V"], k: int) -> Float[Array, "B V"]:
    """Keeps the k largest logits of each row (ties at the k-th included), -inf elsewhere."""
    if k == 0:
        return logits
    threshold = jax.lax.top_k(logits, k)[0][:, -1:]
    return jnp.where(logits >= threshold, logits, -jnp.inf)


@functools.partial(jax.jit, static_argnames=("step_fn", "bos_id", "eos_id", "max_length", "top_k"))
def sample(
    step_fn: StepFn,
    params,
    memory,
    state,
    key: PRNGKeyArray,
    *,
    bos_id: int,
    eos_id: int,
    max_length: int,
    temperature: Float[Array, ""] | float = 1.0,
    top_k: int = 0,
) -> Decoded:
    """Ancestral sampling from softmax(logits / temperature), optionally from the top k only.

    Args:
      step_fn, params, memory, state, bos_id, eos_id, max_length: as ``greedy``.
      key: PRNG key; step i draws with ``fold_in(key, i)``: same key, same sequences.
      temperature: > 0, traced (changing it does not recompile); lower is more conservative.
      top_k: sample among the k most likely tokens (static); 0 for all.

    Returns:
      ``Decoded`` (``log_probs`` under the model at temperature 1, without the top-k cut).
    """
    check_lengths(bos_id, eos_id, max_length)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an int >= 0, got {top_k!r}")
    if isinstance(temperature, int | float) and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")

    def choose(i, logits):
        if top_k > logits.shape[-1]:
            vocab = logits.shape[-1]
            raise ValueError(f"top_k must be at most the vocabulary size {vocab}, got {top_k}")
        scaled = top_k_logits(logits / temperature, top_k)
        return jax.random.categorical(jax.random.fold_in(key, i), scaled, axis=-1)

    return _decode(
        step_fn, params, memory, state, choose, bos_id=bos_id, eos_id=eos_id, max_length=max_length
    )
