"""Batched beam search with alive and finished beams and GNMT's length penalty, jit-compiled.

Per step and source row, the K alive hypotheses are extended by every token and the 2K best
candidates (by log-probability) are kept, so that K survive even when K of them end in EOS:

- a candidate ending in EOS and ranked among the first K is finished (fairseq's rule; one ranked
  K..2K-1 would not have been in a beam of K); at the last step (``max_length``) every candidate
  ranked among the first K is finished, EOS or not;
- the K best candidates not ending in EOS stay alive;
- the finished keep the K best by score = log P(Y) / lp(Y), lp(Y) = ((5 + |Y|) / 6) ** alpha
  (Wu et al. 2016), |Y| counting the EOS.

A row is done once its N-th finished score (N = ``num_return``) is at least the best score an
alive hypothesis could still reach (its log-probability, which can only fall, over the largest
penalty of the lengths left): the n best can no longer change. The loop (``lax.while_loop``) stops
when every row is done or at ``max_length``. With a
beam large enough to keep every candidate the result is the exact n-best (tested against an
exhaustive search); with ``alpha=0`` a beam of one is greedy decoding.

Shapes: B rows, K beams, N returned, L the maximum length, V the vocabulary.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._shapes import Array, Float, Int
from rnnjax.decoding._sampling import StepFn, batch_size, check_lengths


class BeamResult(NamedTuple):
    """The n best finished hypotheses per row, best first.

    Attributes:
      tokens: ``[B, N, L]`` ids; EOS at ``lengths`` (when < L) and EOS after it.
      lengths: ``[B, N]`` tokens before EOS.
      scores: ``[B, N]`` log-probability over the length penalty (-inf for an empty slot, only
        possible when fewer than N hypotheses exist at all).
      log_probs: ``[B, N]`` log-probability, EOS included.
    """

    tokens: Int[Array, "B N L"]
    lengths: Int[Array, "B N"]
    scores: Float[Array, "B N"]
    log_probs: Float[Array, "B N"]


def length_penalty(length, alpha):
    """GNMT's lp(Y) = ((5 + |Y|) / 6) ** alpha."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def _take(x, index):
    """``x[b, index[b, j]]`` for x ``[B, K, ...]`` and index ``[B, J]``."""
    return jax.vmap(lambda row, i: row[i])(x, index)


@functools.partial(
    jax.jit,
    static_argnames=("step_fn", "beam_size", "bos_id", "eos_id", "max_length", "num_return"),
)
def beam_search(
    step_fn: StepFn,
    params,
    memory,
    state,
    *,
    beam_size: int,
    bos_id: int,
    eos_id: int,
    max_length: int,
    alpha: Float[Array, ""] | float = 0.6,
    num_return: int | None = None,
) -> BeamResult:
    """Beam search over ``step_fn`` (see ``rnnjax.decoding``'s module docstring).

    Args:
      step_fn: ``(params, memory, state, tokens [N]) -> (state, logits [N, V])`` (static).
      params: passed to ``step_fn``.
      memory: per-row constants, leaves ``[B, ...]`` (or None); repeated K times, never gathered.
      state: initial decoder state, leaves ``[B, ...]``; repeated K times and reordered.
      beam_size: K >= 1 (static).
      bos_id, eos_id, max_length: as ``greedy``.
      alpha: length-penalty exponent (traced); 0 ranks by log-probability alone.
      num_return: N <= K hypotheses returned per row (static); K when None.

    Returns:
      ``BeamResult``.
    """
    check_lengths(bos_id, eos_id, max_length)
    k = beam_size
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"beam_size must be an int >= 1, got {k!r}")
    n = k if num_return is None else num_return
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= k:
        raise ValueError(f"num_return must be an int in [1, beam_size={k}], got {num_return!r}")
    rows = batch_size(state)
    repeat = lambda x: jnp.repeat(x, k, axis=0)  # noqa: E731
    memory, state = jax.tree.map(repeat, memory), jax.tree.map(repeat, state)
    neg = jnp.float32(-jnp.inf)
    rank = jnp.arange(2 * k)
    max_penalty = lambda i: jnp.maximum(length_penalty(i, alpha), length_penalty(max_length, alpha))  # noqa: E731

    def cond(carry):
        i, done = carry[0], carry[-1]
        return (i < max_length) & ~jnp.all(done)

    def body(carry):
        i, state, alive_seq, alive_lp, fin_seq, fin_score, fin_lp, fin_len, _ = carry
        last = jnp.where(i == 0, bos_id, alive_seq[:, :, jnp.maximum(i - 1, 0)])
        state, logits = step_fn(params, memory, state, jnp.reshape(last, (rows * k,)))
        vocab = logits.shape[-1]
        if vocab < 2:
            raise ValueError(f"beam search needs a vocabulary of at least 2 tokens, got {vocab}")
        log_probs = jnp.reshape(jax.nn.log_softmax(logits.astype(jnp.float32)), (rows, k, vocab))
        candidates = jnp.reshape(alive_lp[:, :, None] + log_probs, (rows, k * vocab))
        cand_lp, flat = jax.lax.top_k(candidates, 2 * k)  # [B, 2K], best first
        origin, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        seqs = _take(alive_seq, origin)
        seqs = jax.lax.dynamic_update_slice(seqs, token[:, :, None], (0, 0, i))
        is_eos = token == eos_id

        # Finished: EOS (or the last step) within the first K candidates.
        finish = (is_eos | (i == max_length - 1)) & (rank < k)[None, :] & (cand_lp > neg)
        score = jnp.where(finish, cand_lp / length_penalty(i + 1, alpha), neg)
        length = jnp.broadcast_to(jnp.where(is_eos, i, i + 1), score.shape)
        all_score = jnp.concatenate([fin_score, score], axis=1)
        fin_score, pick = jax.lax.top_k(all_score, k)
        fin_seq = _take(jnp.concatenate([fin_seq, seqs], axis=1), pick)
        fin_lp = _take(jnp.concatenate([fin_lp, cand_lp], axis=1), pick)
        fin_len = _take(jnp.concatenate([fin_len, length], axis=1), pick)

        # Alive: the K best candidates that did not end in EOS.
        alive_lp, pick = jax.lax.top_k(jnp.where(is_eos, neg, cand_lp), k)
        alive_seq = _take(seqs, pick)
        beam = _take(origin, pick) + (jnp.arange(rows) * k)[:, None]
        state = jax.tree.map(lambda x: x[jnp.reshape(beam, (rows * k,))], state)

        # Done: no alive hypothesis can still beat the N-th finished one.
        bound = alive_lp[:, 0] / max_penalty(i + 2)
        done = fin_score[:, n - 1] >= bound
        return i + 1, state, alive_seq, alive_lp, fin_seq, fin_score, fin_lp, fin_len, done

    empty = jnp.full((rows, k, max_length), eos_id, jnp.int32)
    carry = (
        jnp.int32(0),
        state,
        empty,
        jnp.broadcast_to(jnp.where(jnp.arange(k) == 0, 0.0, neg), (rows, k)),
        empty,
        jnp.full((rows, k), neg),
        jnp.full((rows, k), neg),
        jnp.zeros((rows, k), jnp.int32),
        jnp.zeros((rows,), bool),
    )
    out = jax.lax.while_loop(cond, body, carry)
    fin_seq, fin_score, fin_lp, fin_len = out[4:8]
    return BeamResult(fin_seq[:, :n], fin_len[:, :n], fin_score[:, :n], fin_lp[:, :n])
