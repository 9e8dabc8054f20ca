"""Many-to-one: a sequence (token ids or feature vectors) with its length -> class logits.

Shapes use rnnjax's vocabulary (``rnnjax._shapes``) plus V vocabulary, E embedding, C classes and
F the features of the recurrent stack's outputs (D * H, or D * P with a projection).
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

import rnnjax
from rnnjax._shapes import Array, Float, Int, PRNGKeyArray
from rnnjax.models._dropout import dropout

POOLINGS = ("last", "mean", "max", "attention")


class ClassifierParams(NamedTuple):
    """Parameters of ``SequenceClassifier``.

    Attributes:
      embed: ``[V, E]`` embedding table, or ``None`` for dense inputs.
      rnn: per-layer cell parameters of the recurrent stack (``Recurrent.init``).
      attention: ``(w [F, A], b [A], v [A])`` of attention pooling, or ``None``.
      head: tuple of ``(w, b)`` dense layers; the last maps to the C classes.
    """

    embed: Float[Array, "V E"] | None
    rnn: tuple
    attention: tuple | None
    head: tuple


@dataclasses.dataclass(frozen=True)
class SequenceClassifier:
    """``inputs [B, T] ids (or [B, T, I] features), lengths [B] -> logits [B, C]``.

    Embedding (when ``vocab_size``), any recurrent stack, pooling over each sequence's valid
    steps, then an MLP head. Static, hashable configuration only; parameters from ``init``.

    Attributes:
      layer: the recurrent stack, any ``rnnjax.Recurrent`` (stacked, bidirectional, user cells).
        Its ``dropout`` acts between its layers.
      num_classes: C.
      vocab_size: V for token-id inputs; ``None`` for dense ``[B, T, input_size]`` inputs.
      embed_size: E (token inputs).
      input_size: I (dense inputs).
      pooling: ``"last"``: the state at each sequence's last valid step (in a bidirectional
        stack the forward state at ``length - 1`` and the backward state after position 0:
        PyTorch's ``h_n`` of the last layer, not ``outputs[:, -1]``, which is padding for short
        sequences and only the backward direction's first step); ``"mean"`` and ``"max"`` over
        the valid steps; ``"attention"``: softmax over the valid steps of
        ``v . tanh(W o_t + b)`` (Yang et al., 2016). An empty sequence pools to zeros.
      head_sizes: hidden sizes of the MLP head (ReLU); ``()`` for a linear read-out.
      attention_size: A.
      dropout: rate on the embeddings, the pooled vector and the head's hidden layers (with a
        ``dropout_key`` only).
      word_dropout: probability of replacing each input token by ``unk_id`` in training (with a
        ``dropout_key`` only; Iyyer et al., 2015): a regulariser against memorising rare words.
      unk_id: the id of the unknown token.
    """

    layer: rnnjax.Recurrent
    num_classes: int
    vocab_size: int | None = None
    embed_size: int = 128
    input_size: int | None = None
    pooling: str = "last"
    head_sizes: tuple = ()
    attention_size: int = 64
    dropout: float = 0.0
    word_dropout: float = 0.0
    unk_id: int = 1

    def __post_init__(self):
        if not isinstance(self.layer, rnnjax.Recurrent):
            raise ValueError(f"layer must be an rnnjax.Recurrent, got {type(self.layer).__name__}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {list(POOLINGS)}, got {self.pooling!r}")
        if (self.vocab_size is None) == (self.input_size is None):
            raise ValueError(
                "give exactly one of vocab_size (token inputs) and input_size (dense inputs), "
                f"got vocab_size={self.vocab_size!r}, input_size={self.input_size!r}"
            )
        for name in ("num_classes", "embed_size", "attention_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("dropout", "word_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")

    @property
    def features(self) -> int:
        """F, the size of the pooled vector."""
        return self.layer.output_size

    def init(self, key: PRNGKeyArray) -> ClassifierParams:
        """N(0, 1) embeddings, the stack's own init, PyTorch-default (uniform) dense layers."""
        k_embed, k_rnn, k_attn, k_head = jax.random.split(key, 4)
        embed = None
        if self.vocab_size is not None:
            embed = jax.random.normal(k_embed, (self.vocab_size, self.embed_size))
        rnn_input = self.embed_size if self.vocab_size is not None else self.input_size
        attention = None
        if self.pooling == "attention":
            w, b = _dense(k_attn, self.features, self.attention_size)
            v = _dense(jax.random.fold_in(k_attn, 1), self.attention_size, 1)[0][:, 0]
            attention = (w, b, v)
        sizes = (self.features, *self.head_sizes, self.num_classes)
        keys = jax.random.split(k_head, len(sizes) - 1)
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        head = tuple(_dense(k, n_in, n_out) for k, (n_in, n_out) in zip(keys, pairs, strict=True))
        return ClassifierParams(embed, self.layer.init(k_rnn, rnn_input), attention, head)

    def apply(
        self,
        params: ClassifierParams,
        inputs: Int[Array, "B T"] | Float[Array, "B T I"],
        lengths: Int[Array, " B"] | None = None,
        *,
        dropout_key: PRNGKeyArray | None = None,
    ) -> Float[Array, "B C"]:
        """Logits of each sequence; positions ``>= lengths`` never influence them.

        Args:
          params: from ``init``.
          inputs: ``[B, T]`` ids (``vocab_size`` set) or ``[B, T, I]`` features.
          lengths: ``[B]`` valid steps per sequence, in [0, T]; all T when None.
          dropout_key: enables dropout; deterministic when None.
        """
        keys = [None] * 5 if dropout_key is None else list(jax.random.split(dropout_key, 5))
        if params.embed is not None:
            if keys[4] is not None and self.word_dropout > 0:
                dropped = jax.random.bernoulli(keys[4], self.word_dropout, inputs.shape)
                inputs = jnp.where(dropped, self.unk_id, inputs)
            x = params.embed[inputs]
        else:
            x = jnp.asarray(inputs)
        x = dropout(keys[0], self.dropout, x)
        if lengths is None:
            lengths = jnp.full((x.shape[0],), x.shape[1], jnp.int32)
        outputs, state = self.layer(params.rnn, x, lengths, dropout_key=keys[1])
        if not self.layer.batch_first:
            outputs = jnp.swapaxes(outputs, 0, 1)
        pooled = self._pool(params, outputs, state, lengths)
        pooled = dropout(keys[2], self.dropout, pooled)
        for i, (w, b) in enumerate(params.head):
            pooled = pooled @ w + b[None, :]
            if i < len(params.head) - 1:
                key = None if keys[3] is None else jax.random.fold_in(keys[3], i)
                pooled = dropout(key, self.dropout, jax.nn.relu(pooled))
        return pooled

    def _pool(self, params, outputs: Float[Array, "B T F"], state, lengths) -> Float[Array, "B F"]:
        valid = jnp.arange(outputs.shape[1])[None, :] < lengths[:, None]  # [B, T]
        if self.pooling == "last":
            h_n = state.hidden if isinstance(state, rnnjax.LSTMState) else state
            last = h_n[-self.layer.num_directions :]  # [D, B, H]: the last layer's directions
            return jnp.concatenate(list(last), axis=-1)
        if self.pooling == "mean":
            total = jnp.sum(jnp.where(valid[..., None], outputs, 0.0), axis=1)
            return total / jnp.maximum(lengths, 1)[:, None].astype(outputs.dtype)
        if self.pooling == "max":
            largest = jnp.max(jnp.where(valid[..., None], outputs, -jnp.inf), axis=1)
            return jnp.where(lengths[:, None] > 0, largest, 0.0)
        w, b, v = params.attention
        scores = jnp.tanh(outputs @ w + b[None, None, :]) @ v  # [B, T]
        # A finite floor rather than -inf: an empty sequence then gets zero weights, not NaN.
        weights = jax.nn.softmax(jnp.where(valid, scores, -1e30), axis=1) * valid
        return jnp.einsum("bt,btf->bf", weights, outputs)


def _dense(key, n_in: int, n_out: int):
    """torch.nn.Linear's default initialisation: U(-1/sqrt(n_in), 1/sqrt(n_in))."""
    k_w, k_b = jax.random.split(key)
    bound = 1.0 / n_in**0.5
    w = jax.random.uniform(k_w, (n_in, n_out), minval=-bound, maxval=bound)
    return w, jax.random.uniform(k_b, (n_out,), minval=-bound, maxval=bound)
