"""Attention over an encoder's outputs: Bahdanau's additive score and Luong's dot, general, concat.

Everything here is a pure function of ONE example, like a cell: a query ``[Q]`` (a decoder state
or output), a memory ``[S, M]`` (the encoder's outputs at S source positions) and a mask ``[S]``
(True at valid positions). Batch with ``jax.vmap``. Besides rnnjax's shape vocabulary, Q is the
query's size, M the memory's and A the attention layer's::

    attention = Attention("bahdanau", query_size=Q, memory_size=M, attention_size=A)
    params = attention.init(key)
    keys = attention.keys(params, memory)                  # once per source: [S, A]
    context, weights = attention(params, query, memory, mask, keys)   # [M], [S]

Scores (h_j the memory at position j, q the query):

    bahdanau  v^T tanh(W q + U h_j + b)       (Bahdanau et al. 2015, q = previous decoder state)
    concat    v^T tanh(W_a [q; h_j] + b)       (Luong et al. 2015; the same function, W_a = [W; U])
    general   q^T W_a h_j                      (Luong)
    dot       q^T h_j                          (Luong; needs Q = M)

Padding gets exactly zero weight (``masked_softmax``); a source with no valid position gives all
zero weights and a zero context instead of NaN. ``keys`` is the query-independent half of the
score (``U h_j`` or ``W_a h_j``), computed once per source sentence rather than once per step.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Bool

from rnnjax._shapes import Array, Float, PRNGKeyArray

ATTENTION_KINDS = ("bahdanau", "dot", "general", "concat")


class AttentionParams(NamedTuple):
    """Parameters of ``Attention``; fields a kind does not use are None.

    Attributes:
      w_query: ``[Q, A]`` query projection W (bahdanau, concat).
      w_memory: ``[M, A]`` memory projection U (bahdanau, concat) or ``[M, Q]`` W_a^T (general).
      bias: ``[A]`` (bahdanau, concat).
      v: ``[A]`` score vector (bahdanau, concat).
    """

    w_query: Float[Array, "Q A"] | None = None
    w_memory: Float[Array, "M A"] | None = None
    bias: Float[Array, " A"] | None = None
    v: Float[Array, " A"] | None = None


def masked_softmax(
    scores: Float[Array, " S"], mask: Bool[Array, " S"] | None
) -> Float[Array, " S"]:
    """Softmax over the positions where ``mask`` is True; exactly 0 elsewhere (all 0 if none).

    The masked scores never reach ``exp``, so padding cannot contribute to values or gradients.
    """
    if mask is None:
        return jax.nn.softmax(scores, axis=-1)
    low = jnp.finfo(scores.dtype).min
    shifted = jnp.where(mask, scores, low)
    shifted = shifted - jax.lax.stop_gradient(jnp.max(shifted, axis=-1, keepdims=True))
    exp = jnp.where(mask, jnp.exp(jnp.where(mask, shifted, 0.0)), 0.0)
    total = jnp.sum(exp, axis=-1, keepdims=True)
    return exp / jnp.where(total > 0, total, 1.0)


def _uniform(key, shape, fan_in, dtype):
    bound = 1.0 / fan_in**0.5  # torch.nn.Linear's default
    return jax.random.uniform(key, shape, dtype, -bound, bound)


@dataclasses.dataclass(frozen=True)
class Attention:
    """One attention mechanism (static configuration; hashable, a valid ``jax.jit`` static arg).

    Attributes:
      kind: one of ``ATTENTION_KINDS``.
      query_size: Q.
      memory_size: M.
      attention_size: A for bahdanau and concat; 0 means Q. Unused by dot and general.
    """

    kind: str
    query_size: int
    memory_size: int
    attention_size: int = 0

    def __post_init__(self):
        if self.kind not in ATTENTION_KINDS:
            raise ValueError(f"kind must be one of {ATTENTION_KINDS}, got {self.kind!r}")
        for name in ("query_size", "memory_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.attention_size, int) or self.attention_size < 0:
            raise ValueError(f"attention_size must be an int >= 0, got {self.attention_size!r}")
        if self.kind == "dot" and self.query_size != self.memory_size:
            raise ValueError(
                "dot attention needs query_size == memory_size, got "
                f"{self.query_size} and {self.memory_size} (use 'general' to learn a map)"
            )

    @property
    def size(self) -> int:
        """A, the width of the additive layer (bahdanau and concat)."""
        return self.attention_size or self.query_size

    def init(self, key: PRNGKeyArray, dtype=jnp.float32) -> AttentionParams:
        """Parameters drawn as ``torch.nn.Linear`` draws its weights (U(+-1/sqrt(fan_in)))."""
        q, m, a = self.query_size, self.memory_size, self.size
        k_q, k_m, k_b, k_v = jax.random.split(key, 4)
        if self.kind == "dot":
            return AttentionParams()
        if self.kind == "general":
            return AttentionParams(w_memory=_uniform(k_m, (m, q), m, dtype))
        return AttentionParams(
            w_query=_uniform(k_q, (q, a), q + m, dtype),
            w_memory=_uniform(k_m, (m, a), q + m, dtype),
            bias=_uniform(k_b, (a,), q + m, dtype),
            v=_uniform(k_v, (a,), a, dtype),
        )

    def keys(self, params: AttentionParams, memory: Float[Array, "S M"]) -> Float[Array, "S K"]:
        """The query-independent part of the scores: ``[S, A]``, ``[S, Q]`` (general) or memory."""
        if self.kind == "dot":
            return memory
        return memory @ params.w_memory

    def scores(
        self, params: AttentionParams, query: Float[Array, " Q"], keys: Float[Array, "S K"]
    ) -> Float[Array, " S"]:
        """Unnormalised scores of ``query`` against every source position."""
        # Products and sums rather than matmuls: under vmap a matrix-vector product per example
        # becomes a batch of tiny dots, which XLA on CPU runs several times slower than one
        # fused multiply-reduce.
        if self.kind in ("dot", "general"):
            return jnp.sum(keys * query[None, :], axis=-1)
        hidden = jnp.tanh(keys + (query @ params.w_query + params.bias)[None, :])
        return jnp.sum(hidden * params.v[None, :], axis=-1)

    def __call__(
        self,
        params: AttentionParams,
        query: Float[Array, " Q"],
        memory: Float[Array, "S M"],
        mask: Bool[Array, " S"] | None = None,
        keys: Float[Array, "S K"] | None = None,
    ) -> tuple[Float[Array, " M"], Float[Array, " S"]]:
        """Attends from ``query`` over ``memory``.

        Args:
          params: from ``init``.
          query: ``[Q]``.
          memory: ``[S, M]``.
          mask: ``[S]`` booleans, True at valid positions; all valid when None.
          keys: ``self.keys(params, memory)`` if already computed.

        Returns:
          ``(context [M], weights [S])``: the weighted mean of the memory and the weights, which
          sum to 1 over the valid positions and are 0 at the others.
        """
        if keys is None:
            keys = self.keys(params, memory)
        weights = masked_softmax(self.scores(params, query, keys), mask)
        return jnp.sum(weights[:, None] * memory, axis=0), weights
