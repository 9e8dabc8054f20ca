"""One-to-many generation: a decoder conditioned on one vector (a class, image features), no source.

Shapes: B batch, F conditioning features, T target positions, V vocabulary. Spelling a digit's
name from a one-hot class, as ``tests/test_one_to_many.py`` trains it::

    model = VectorToSequence(Decoder(rnnjax.cells.GRUCell(32), vocab_size=V, embed_size=16,
                                     summary_size=10, attention="none"))
    params = model.init(key)
    logits = model(params, one_hot_classes, tgt_inputs)           # [B, T, V], teacher forcing
    state = model.initial_state(params, one_hot_classes)
    out = rnnjax.decoding.greedy(model.decode_step, params, None, state,
                                 bos_id=BOS, eos_id=EOS, max_length=8)
"""

import dataclasses

import jax

from rnnjax._shapes import Array, Float, Int, PRNGKeyArray
from rnnjax.models._decoder import Decoder, DecoderParams, DecoderState


@dataclasses.dataclass(frozen=True)
class VectorToSequence:
    """A ``Decoder`` whose initial state is bridged from a vector ``[F]`` (``summary_size`` F).

    Attributes:
      decoder: with ``attention="none"`` and a ``"tanh"`` or ``"linear"`` bridge.
    """

    decoder: Decoder

    def __post_init__(self):
        if self.decoder.attention != "none":
            raise ValueError(
                f"decoder.attention must be 'none' (there is no source), got "
                f"{self.decoder.attention!r}"
            )
        if self.decoder.bridge not in ("tanh", "linear"):
            raise ValueError(
                f"decoder.bridge must be 'tanh' or 'linear' to read the vector, got "
                f"{self.decoder.bridge!r}"
            )

    def init(self, key: PRNGKeyArray) -> DecoderParams:
        return self.decoder.init(key)

    def initial_state(self, params: DecoderParams, vectors: Float[Array, "B F"]) -> DecoderState:
        """Initial decoder states (leaves ``[B, ...]``) from the conditioning vectors."""
        if vectors.ndim != 2 or vectors.shape[1] != self.decoder.summary_size:
            raise ValueError(
                f"vectors must have shape [B, {self.decoder.summary_size}], got {vectors.shape}"
            )
        return jax.vmap(self.decoder.initial_state, in_axes=(None, 0))(params, vectors)

    def __call__(
        self,
        params: DecoderParams,
        vectors: Float[Array, "B F"],
        tgt_inputs: Int[Array, "B T"],
        *,
        dropout_key: PRNGKeyArray | None = None,
    ) -> Float[Array, "B T V"]:
        """Teacher-forced logits ``[B, T, V]`` for inputs (BOS, y_1, ...)."""
        state = self.initial_state(params, vectors)
        keys = None if dropout_key is None else jax.random.split(dropout_key, vectors.shape[0])
        run = self.decoder.teacher_forcing
        logits, _ = jax.vmap(
            lambda s, y, k: run(params, s, y, None, dropout_key=k),
            in_axes=(0, 0, None if keys is None else 0),
        )(state, tgt_inputs, keys)
        return logits

    def decode_step(self, params: DecoderParams, memory, state: DecoderState, tokens):
        """One step of N rows for ``rnnjax.decoding`` (``memory`` is unused: pass None)."""
        del memory
        step = jax.vmap(lambda s, y: self.decoder.step(params, s, y, None)[:2])
        return step(state, tokens)
