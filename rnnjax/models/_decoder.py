"""The attention decoder: any rnnjax cell, one example per call, steps or a teacher-forced scan.

Shapes: rnnjax's vocabulary (B batch, S source positions, T target positions, V vocabulary, E
embedding, H hidden, D directions) plus M = D*H the encoder's output features and O the decoder
cell's output features. The decoder works on ONE example, like a cell; ``Seq2Seq`` batches it
with ``jax.vmap``::

    model = Seq2Seq(Encoder(rnnjax.GRU(128), vocab_size=Vs, embed_size=64),
                    Decoder(rnnjax.cells.GRUCell(128), vocab_size=Vt, embed_size=64,
                            memory_size=128, summary_size=128, attention="bahdanau"))
    params = model.init(key)
    logits, weights = model(params, src, src_lengths, tgt_inputs)    # [B, T, V], [B, T, S]

How one decoder step uses attention:

- ``"bahdanau"`` (Bahdanau et al. 2015): the query is the previous cell state (its leaves
  concatenated, so any cell works), the context joins the embedded previous token as the cell's
  input, and the logits are read from the cell's output (the PyTorch tutorial's structure).
- ``"dot"``, ``"general"``, ``"concat"`` (Luong et al. 2015): the cell steps first; its output
  h_t queries the memory; the attentional vector h~_t = tanh(W_c [c_t; h_t]) gives the logits and,
  with ``input_feeding``, joins the next step's input.
- ``"none"``: the decoder sees the source only through its initial state (the bridge).

The bridge maps the encoder's final state (last layer, directions concatenated) to the decoder's
initial state: ``"tanh"`` (tanh of a linear map, as Bahdanau's s_0), ``"linear"``, ``"copy"`` (the
same state, as the PyTorch tutorial; needs equal shapes) or ``"zeros"``.
"""

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Bool

import rnnjax
from rnnjax._shapes import Array, Float, Int, PRNGKeyArray
from rnnjax.models._attention import ATTENTION_KINDS, Attention, AttentionParams

DECODER_ATTENTION = ("none",) + ATTENTION_KINDS
BRIDGES = ("tanh", "linear", "copy", "zeros")


class Memory(NamedTuple):
    """What the decoder attends over, for one example.

    Attributes:
      values: ``[S, M]`` encoder outputs.
      keys: the attention's query-independent part (``Attention.keys``), or None.
      mask: ``[S]`` True at valid source positions.
    """

    values: Float[Array, "S M"]
    keys: Any
    mask: Bool[Array, " S"]


class DecoderState(NamedTuple):
    """Decoder state of one example: the cell's state and Luong's fed-back vector h~ (``[O]``,
    ``[0]`` without input feeding)."""

    cell: Any
    feed: Float[Array, " F"]


class DecoderParams(NamedTuple):
    """Parameters of ``Decoder``: embedding ``[V, E]``, cell, attention, bridge (a tuple of
    ``(w [N, n], b [n])`` per leaf of the cell's state, or None), Luong's ``w_combine [M+O, O]``
    (or None) and the read-out ``w_out [O, V]``, ``b_out [V]``."""

    embed: Float[Array, "V E"]
    cell: Any
    attention: AttentionParams | None
    bridge: tuple | None
    w_combine: Float[Array, "MO O"] | None
    w_out: Float[Array, "O V"]
    b_out: Float[Array, " V"]


def _uniform(key, shape, fan_in, dtype=jnp.float32):
    bound = 1.0 / fan_in**0.5  # torch.nn.Linear's default
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _flat(tree) -> Float[Array, " N"]:
    return jnp.concatenate([jnp.reshape(leaf, (-1,)) for leaf in jax.tree.leaves(tree)])


def _check_size(value, name: str, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def dropout_mask(key: PRNGKeyArray | None, rate: float, shape) -> Float[Array, "..."] | None:
    """Inverted-dropout multipliers (0 or 1/(1-rate)), or None when ``key`` is None or rate 0."""
    if key is None or rate == 0.0:
        return None
    return jax.random.bernoulli(key, 1.0 - rate, shape) / (1.0 - rate)


def _apply(mask, x):
    return x if mask is None else x * mask


@dataclasses.dataclass(frozen=True)
class Decoder:
    """Attention decoder around any rnnjax cell (built-in or user-written); one example per call.

    Attributes:
      cell: the recurrent cell (``rnnjax.cells.Cell``).
      vocab_size: V of the target side.
      embed_size: E.
      memory_size: M, the encoder's output features (ignored with ``attention="none"``).
      summary_size: N, the features of the flattened encoder summary (tanh and linear bridges).
      attention: one of ``DECODER_ATTENTION``.
      attention_size: A of the additive scores (bahdanau, concat); 0 means the query's size.
      input_feeding: Luong's input feeding (dot, general, concat).
      bridge: one of ``BRIDGES``.
      dropout: rate on the embedded inputs and before the read-out (only with a dropout key).
    """

    cell: rnnjax.cells.Cell
    vocab_size: int
    embed_size: int
    memory_size: int = 0
    summary_size: int = 0
    attention: str = "bahdanau"
    attention_size: int = 0
    input_feeding: bool = True
    bridge: str = "tanh"
    dropout: float = 0.0

    def __post_init__(self):
        if not isinstance(self.cell, rnnjax.cells.Cell):
            raise ValueError(f"cell must be an rnnjax.cells.Cell, got {type(self.cell).__name__}")
        _check_size(self.vocab_size, "vocab_size", 2)
        _check_size(self.embed_size, "embed_size")
        if self.attention not in DECODER_ATTENTION:
            raise ValueError(
                f"attention must be one of {DECODER_ATTENTION}, got {self.attention!r}"
            )
        if self.bridge not in BRIDGES:
            raise ValueError(f"bridge must be one of {BRIDGES}, got {self.bridge!r}")
        if self.attention != "none":
            _check_size(self.memory_size, "memory_size")
        if self.bridge in ("tanh", "linear"):
            _check_size(self.summary_size, "summary_size")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def luong(self) -> bool:
        return self.attention in ("dot", "general", "concat")

    @property
    def feeds(self) -> bool:
        """Whether h~ is fed back into the next step's input."""
        return self.luong and self.input_feeding

    def state_shapes(self):
        """Shapes and dtypes of the cell's state (``jax.ShapeDtypeStruct`` leaves)."""
        return jax.eval_shape(self.cell.initial_state)

    @property
    def attention_module(self) -> Attention | None:
        if self.attention == "none":
            return None
        if self.luong:
            query_size = self.cell.output_size
        else:
            query_size = sum(math.prod(s.shape) for s in jax.tree.leaves(self.state_shapes()))
        return Attention(self.attention, query_size, self.memory_size, self.attention_size)

    @property
    def input_size(self) -> int:
        """Features of the cell's input: E, plus M (bahdanau) or O (input feeding)."""
        extra = self.memory_size if self.attention == "bahdanau" else 0
        return self.embed_size + extra + (self.cell.output_size if self.feeds else 0)

    def init(self, key: PRNGKeyArray) -> DecoderParams:
        """Embeddings N(0, 1) (``torch.nn.Embedding``), the cell's own init, linear layers as
        ``torch.nn.Linear``."""
        k_emb, k_cell, k_att, k_bridge, k_comb, k_out = jax.random.split(key, 6)
        o = self.cell.output_size
        attention = self.attention_module
        bridge = None
        if self.bridge in ("tanh", "linear"):
            leaves = jax.tree.leaves(self.state_shapes())
            keys = jax.random.split(k_bridge, 2 * len(leaves))
            n = self.summary_size
            bridge = tuple(
                (
                    _uniform(keys[2 * i], (n, math.prod(s.shape)), n),
                    _uniform(keys[2 * i + 1], (math.prod(s.shape),), n),
                )
                for i, s in enumerate(leaves)
            )
        return DecoderParams(
            embed=jax.random.normal(k_emb, (self.vocab_size, self.embed_size)),
            cell=self.cell.init(k_cell, self.input_size),
            attention=None if attention is None else attention.init(k_att),
            bridge=bridge,
            w_combine=_uniform(k_comb, (self.memory_size + o, o), self.memory_size + o)
            if self.luong
            else None,
            w_out=_uniform(k_out, (o, self.vocab_size), o),
            b_out=jnp.zeros((self.vocab_size,)),
        )

    def initial_state(self, params: DecoderParams, summary=None) -> DecoderState:
        """The first state from the encoder's summary (a pytree; ``[N]`` once flattened).

        ``"copy"`` uses ``summary`` as the cell state (same structure and shapes); ``"zeros"``
        ignores it (may be None).
        """
        feed = jnp.zeros((self.cell.output_size if self.feeds else 0,))
        if self.bridge == "zeros":
            return DecoderState(self.cell.initial_state(), feed)
        if self.bridge == "copy":
            return DecoderState(summary, feed)
        flat = _flat(summary)
        shapes = self.state_shapes()
        leaves = []
        for (w, b), shape in zip(params.bridge, jax.tree.leaves(shapes), strict=True):
            leaf = flat @ w + b
            leaf = jnp.tanh(leaf) if self.bridge == "tanh" else leaf
            leaves.append(jnp.reshape(leaf, shape.shape).astype(shape.dtype))
        return DecoderState(jax.tree.unflatten(jax.tree.structure(shapes), leaves), feed)

    def memory(
        self, params: DecoderParams, values: Float[Array, "S M"], mask: Bool[Array, " S"]
    ) -> Memory:
        """Wraps the encoder outputs of one example, computing the attention keys once."""
        attention = self.attention_module
        keys = None if attention is None else attention.keys(params.attention, values)
        return Memory(values, keys, mask)

    def _attend(self, params, query, memory):
        return self.attention_module(
            params.attention, query, memory.values, memory.mask, memory.keys
        )

    def _core(self, params, state: DecoderState, embedded, memory):
        """One step from an embedded input: ``(state, features [O], weights [S])``."""
        no_weights = jnp.zeros(memory.mask.shape if memory is not None else (0,))
        if self.attention == "bahdanau":
            context, weights = self._attend(params, _flat(state.cell), memory)
            cell_state, out = self.cell.step(
                params.cell, state.cell, jnp.concatenate([embedded, context])
            )
            return DecoderState(cell_state, state.feed), out, weights
        x = jnp.concatenate([embedded, state.feed]) if self.feeds else embedded
        cell_state, out = self.cell.step(params.cell, state.cell, x)
        if not self.luong:
            return DecoderState(cell_state, state.feed), out, no_weights
        context, weights = self._attend(params, out, memory)
        attentional = jnp.tanh(jnp.concatenate([context, out]) @ params.w_combine)
        feed = attentional if self.feeds else state.feed
        return DecoderState(cell_state, feed), attentional, weights

    def _readout(self, params, features):
        return features @ params.w_out + jnp.reshape(
            params.b_out, (1,) * (features.ndim - 1) + params.b_out.shape
        )

    def step(
        self,
        params: DecoderParams,
        state: DecoderState,
        y_prev: Int[Array, ""],
        memory: Memory | None,
    ) -> tuple[DecoderState, Float[Array, " V"], Float[Array, " S"]]:
        """One decoding step of one example: ``(state, logits [V], attention weights [S])``.

        ``memory`` is None for a decoder without attention and without source (one-to-many);
        the weights are then ``[0]``, and zeros ``[S]`` with ``attention="none"``.
        """
        state, features, weights = self._core(params, state, params.embed[y_prev], memory)
        return state, self._readout(params, features), weights

    def teacher_forcing(
        self,
        params: DecoderParams,
        state: DecoderState,
        inputs: Int[Array, " T"],
        memory: Memory | None,
        *,
        dropout_key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, "T V"], Float[Array, "T S"]]:
        """Runs ``step`` over the ground-truth inputs (BOS, y_1, ...) with ``lax.scan``.

        The read-out is one ``[T, O] @ [O, V]`` matmul after the scan. Luong attention without
        input feeding runs the cell alone in the scan and attends for all T steps at once.

        Returns:
          ``(logits [T, V], attention weights [T, S])``.
        """
        embedded, masks = self._embed_with_dropout(params, inputs, dropout_key)
        if self.luong and not self.feeds:
            outs, _ = rnnjax.unroll(self.cell, params.cell, embedded, state.cell)
            attend = jax.vmap(self._attend, in_axes=(None, 0, None))
            context, weights = attend(params, outs, memory)
            features = jnp.tanh(jnp.concatenate([context, outs], axis=-1) @ params.w_combine)
        else:

            def body(state, x):
                state, features, weights = self._core(params, state, x, memory)
                return state, (features, weights)

            _, (features, weights) = jax.lax.scan(body, state, embedded)
        return self._readout(params, _apply(masks[1], features)), weights

    def _embed_with_dropout(self, params, inputs, dropout_key):
        num_steps = inputs.shape[0]
        k_in, k_out = (None, None) if dropout_key is None else jax.random.split(dropout_key)
        masks = (
            dropout_mask(k_in, self.dropout, (num_steps, self.embed_size)),
            dropout_mask(k_out, self.dropout, (num_steps, self.cell.output_size)),
        )
        return _apply(masks[0], params.embed[inputs]), masks

    def scheduled_sampling(
        self,
        params: DecoderParams,
        state: DecoderState,
        inputs: Int[Array, " T"],
        memory: Memory | None,
        key: PRNGKeyArray,
        teacher_prob: Float[Array, ""] | float,
        *,
        dropout_key: PRNGKeyArray | None = None,
    ) -> tuple[Float[Array, "T V"], Float[Array, "T S"]]:
        """Scheduled sampling (Bengio et al. 2015): each step after the first is fed the ground
        truth with probability ``teacher_prob`` (a traced scalar: one compilation serves every
        ratio) and otherwise a token sampled from the model's previous logits.

        With ``teacher_prob=1`` (and the same ``dropout_key``) this equals ``teacher_forcing``.
        No gradient flows through the sampled choices.
        """
        num_steps = inputs.shape[0]
        _, masks = self._embed_with_dropout(params, inputs, dropout_key)
        sizes = (self.embed_size, self.cell.output_size)
        masks = tuple(
            jnp.ones((num_steps, size)) if m is None else m
            for size, m in zip(sizes, masks, strict=True)
        )
        keys = jax.random.split(key, num_steps)

        def body(carry, xs):
            state, prev_logits = carry
            truth, in_mask, out_mask, step_key, t = xs
            k_coin, k_sample = jax.random.split(step_key)
            sampled = jax.random.categorical(k_sample, prev_logits).astype(inputs.dtype)
            use_truth = (t == 0) | jax.random.bernoulli(k_coin, teacher_prob)
            token = jnp.where(use_truth, truth, sampled)
            state, features, weights = self._core(
                params, state, params.embed[token] * in_mask, memory
            )
            logits = self._readout(params, features * out_mask)
            return (state, jax.lax.stop_gradient(logits)), (logits, weights)

        carry = (state, jnp.zeros((self.vocab_size,)))
        xs = (inputs, *masks, keys, jnp.arange(num_steps))
        _, (logits, weights) = jax.lax.scan(body, carry, xs)
        return logits, weights
