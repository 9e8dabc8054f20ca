"""Encoder-decoder with attention: any rnnjax stack encodes, the cell-based ``Decoder`` emits.

Shapes: rnnjax's vocabulary (B batch, S source positions, T target positions, V vocabulary, E
embedding, L layers, D directions, H hidden) plus M = D*H, the encoder's output features::

    encoder = Encoder(rnnjax.GRU(128, bidirectional=True), vocab_size=Vs, embed_size=64)
    decoder = Decoder(rnnjax.cells.GRUCell(128), vocab_size=Vt, embed_size=64,
                      memory_size=encoder.output_size, summary_size=encoder.summary_size,
                      attention="bahdanau")
    model = Seq2Seq(encoder, decoder)
    params = model.init(key)
    logits, weights = model(params, src, src_lengths, tgt_inputs)   # [B, T, V], [B, T, S]
    loss, metrics = sequence_loss(logits, tgt_outputs, tgt_lengths)

Decoding (``rnnjax.decoding``) takes ``model.decode_step`` and the output of ``model.encode``.
"""

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

import rnnjax
from rnnjax._shapes import Array, Float, Int, PRNGKeyArray
from rnnjax.models._decoder import Decoder, DecoderParams, DecoderState, Memory, dropout_mask


class EncoderParams(NamedTuple):
    """Embedding ``[V, E]`` and the stack's parameters (``Recurrent.init``)."""

    embed: Float[Array, "V E"]
    rnn: tuple


@dataclasses.dataclass(frozen=True)
class Encoder:
    """Embedding + any rnnjax stack (``rnnjax.LSTM/GRU/RNN`` or a user ``Recurrent``).

    Attributes:
      layer: the stack; must be ``batch_first`` (stacked, bidirectional, projected: any).
      vocab_size: V of the source side.
      embed_size: E.
      dropout: rate on the embedded inputs (the stack's own ``dropout`` acts between layers).
    """

    layer: rnnjax.Recurrent
    vocab_size: int
    embed_size: int
    dropout: float = 0.0

    def __post_init__(self):
        if not isinstance(self.layer, rnnjax.Recurrent):
            raise ValueError(f"layer must be an rnnjax.Recurrent, got {type(self.layer).__name__}")
        if not self.layer.batch_first:
            raise ValueError("layer must be batch_first=True, got batch_first=False")
        for name, low in (("vocab_size", 2), ("embed_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def output_size(self) -> int:
        """M: features of the outputs (D * H, or D * P for a projected LSTM)."""
        return self.layer.output_size

    def summary_shapes(self):
        """Shapes of one example's summary: the state's leaves, last layer, directions joined."""
        return jax.eval_shape(
            lambda: jax.tree.map(lambda s: self._last_layer(s)[0], self.layer.initial_state(1))
        )

    @property
    def summary_size(self) -> int:
        """N: features of the summary once its leaves are flattened and concatenated."""
        return sum(math.prod(s.shape) for s in jax.tree.leaves(self.summary_shapes()))

    def _last_layer(self, leaf):
        d = self.layer.num_directions
        last = jnp.moveaxis(leaf[-d:], 0, 1)  # [B, D, X]
        return jnp.reshape(last, (last.shape[0], -1))

    def init(self, key: PRNGKeyArray) -> EncoderParams:
        k_emb, k_rnn = jax.random.split(key)
        return EncoderParams(
            embed=jax.random.normal(k_emb, (self.vocab_size, self.embed_size)),
            rnn=self.layer.init(k_rnn, self.embed_size),
        )

    def __call__(
        self,
        params: EncoderParams,
        tokens: Int[Array, "B S"],
        lengths: Int[Array, " B"],
        *,
        dropout_key: PRNGKeyArray | None = None,
    ):
        """Encodes a padded batch.

        Returns:
          ``(outputs [B, S, M], summary)``: outputs are zero at padding; the summary is the
          final state of the last layer (at each sequence's last valid step, both directions
          concatenated), a pytree with leaves ``[B, D*H]`` (``LSTMState`` for an LSTM).
        """
        k_emb, k_rnn = (None, None) if dropout_key is None else jax.random.split(dropout_key)
        x = params.embed[tokens]
        mask = dropout_mask(k_emb, self.dropout, x.shape)
        x = x if mask is None else x * mask
        outputs, state = self.layer(params.rnn, x, lengths, dropout_key=k_rnn)
        return outputs, jax.tree.map(self._last_layer, state)


class Seq2SeqParams(NamedTuple):
    encoder: EncoderParams
    decoder: DecoderParams


@dataclasses.dataclass(frozen=True)
class Seq2Seq:
    """Encoder + decoder, batched; static configuration only (a valid ``jax.jit`` static arg)."""

    encoder: Encoder
    decoder: Decoder

    def __post_init__(self):
        dec = self.decoder
        if dec.attention != "none" and dec.memory_size != self.encoder.output_size:
            raise ValueError(
                f"decoder.memory_size must equal the encoder's output size "
                f"{self.encoder.output_size}, got {dec.memory_size}"
            )
        if dec.bridge in ("tanh", "linear") and dec.summary_size != self.encoder.summary_size:
            raise ValueError(
                f"decoder.summary_size must equal the encoder's summary size "
                f"{self.encoder.summary_size}, got {dec.summary_size}"
            )
        if dec.bridge == "copy":
            want, got = dec.state_shapes(), self.encoder.summary_shapes()
            if jax.tree.structure(want) != jax.tree.structure(got) or [
                s.shape for s in jax.tree.leaves(want)
            ] != [s.shape for s in jax.tree.leaves(got)]:
                raise ValueError(
                    f"bridge='copy' needs the encoder summary {got} to match the decoder "
                    f"state {want}; use bridge='tanh'"
                )

    def init(self, key: PRNGKeyArray) -> Seq2SeqParams:
        k_enc, k_dec = jax.random.split(key)
        return Seq2SeqParams(self.encoder.init(k_enc), self.decoder.init(k_dec))

    def encode(
        self,
        params: Seq2SeqParams,
        src: Int[Array, "B S"],
        src_lengths: Int[Array, " B"],
        *,
        dropout_key: PRNGKeyArray | None = None,
    ) -> tuple[DecoderState, Memory]:
        """Encodes and bridges: the decoder's initial states and memories, leaves ``[B, ...]``."""
        outputs, summary = self.encoder(params.encoder, src, src_lengths, dropout_key=dropout_key)
        mask = jnp.arange(src.shape[1])[None, :] < src_lengths[:, None]
        memory = jax.vmap(self.decoder.memory, in_axes=(None, 0, 0))(params.decoder, outputs, mask)
        state = jax.vmap(self.decoder.initial_state, in_axes=(None, 0))(params.decoder, summary)
        return state, memory

    def __call__(
        self,
        params: Seq2SeqParams,
        src: Int[Array, "B S"],
        src_lengths: Int[Array, " B"],
        tgt_inputs: Int[Array, "B T"],
        *,
        teacher_prob: Float[Array, ""] | float | None = None,
        sample_key: PRNGKeyArray | None = None,
        dropout_key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, "B T V"], Float[Array, "B T S"]]:
        """Training forward pass: teacher forcing, or scheduled sampling with ``teacher_prob``.

        Args:
          params: from ``init``.
          src: ``[B, S]`` source ids, padded anywhere past ``src_lengths``.
          src_lengths: ``[B]`` valid source lengths.
          tgt_inputs: ``[B, T]`` decoder inputs (BOS, y_1, ..., then anything).
          teacher_prob: probability of feeding the ground truth, a scalar or ``[B]`` (traced);
            plain teacher forcing when None.
          sample_key: PRNG key of scheduled sampling (needed with ``teacher_prob``).
          dropout_key: enables dropout.

        Returns:
          ``(logits [B, T, V], attention weights [B, T, S])``.
        """
        k_enc, k_dec = (None, None) if dropout_key is None else jax.random.split(dropout_key)
        state, memory = self.encode(params, src, src_lengths, dropout_key=k_enc)
        batch = src.shape[0]
        dec_keys = None if k_dec is None else jax.random.split(k_dec, batch)
        if teacher_prob is None:
            run = self.decoder.teacher_forcing
            return jax.vmap(
                lambda s, y, m, k: run(params.decoder, s, y, m, dropout_key=k),
                in_axes=(0, 0, 0, None if dec_keys is None else 0),
            )(state, tgt_inputs, memory, dec_keys)
        if sample_key is None:
            raise ValueError("sample_key is needed with teacher_prob, got None")
        run = self.decoder.scheduled_sampling
        probs = jnp.broadcast_to(jnp.asarray(teacher_prob, jnp.float32), (batch,))
        return jax.vmap(
            lambda s, y, m, k, p, dk: run(params.decoder, s, y, m, k, p, dropout_key=dk),
            in_axes=(0, 0, 0, 0, 0, None if dec_keys is None else 0),
        )(state, tgt_inputs, memory, jax.random.split(sample_key, batch), probs, dec_keys)

    def decode_step(
        self,
        params: Seq2SeqParams,
        memory: Memory,
        state: DecoderState,
        tokens: Int[Array, " N"],
    ) -> tuple[DecoderState, Float[Array, "N V"]]:
        """One step of N hypotheses, in the form ``rnnjax.decoding`` expects."""
        step = jax.vmap(self.decoder.step, in_axes=(None, 0, 0, 0))
        state, logits, _ = step(params.decoder, state, tokens, memory)
        return state, logits


def sequence_loss(
    logits: Float[Array, "B T V"],
    targets: Int[Array, "B T"],
    lengths: Int[Array, " B"],
    *,
    label_smoothing: float = 0.0,
) -> tuple[Float[Array, ""], dict]:
    """Cross-entropy averaged over the valid target tokens (positions < length) only.

    Args:
      logits: ``[B, T, V]``.
      targets: ``[B, T]`` ids; anything at padded positions.
      lengths: ``[B]`` valid target lengths (the EOS included).
      label_smoothing: epsilon of uniform label smoothing in the training loss.

    Returns:
      ``(loss, metrics)`` with metrics ``nll`` (mean negative log-likelihood, no smoothing),
      ``accuracy`` (the target's logit is the largest) and ``tokens`` (the count), all over
      valid tokens.
    """
    mask = (jnp.arange(targets.shape[1])[None, :] < lengths[:, None]).astype(logits.dtype)
    # From the log-normaliser rather than log_softmax: no [B, T, V] array of log-probabilities
    # is written and read back (20% of the read-out's forward and backward time on a CPU).
    log_z = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    nll = log_z - target_logit
    loss = nll
    if label_smoothing:  # the uniform term: mean over V of -log p = log Z - mean(logits)
        uniform = log_z - jnp.mean(logits, axis=-1)
        loss = (1.0 - label_smoothing) * nll + label_smoothing * uniform
    count = jnp.sum(mask)
    denominator = jnp.maximum(count, 1.0)
    # The target has the largest logit (ties count): cheaper on CPU than an argmax.
    correct = (target_logit >= jnp.max(logits, axis=-1)).astype(logits.dtype)
    metrics = {
        "nll": jnp.sum(nll * mask) / denominator,
        "accuracy": jnp.sum(correct * mask) / denominator,
        "tokens": count,
    }
    return jnp.sum(loss * mask) / denominator, metrics
