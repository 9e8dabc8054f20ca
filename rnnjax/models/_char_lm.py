"""Character-level language model: embedding, a stack of recurrent layers, linear read-out.

Shapes use rnnjax's vocabulary (``rnnjax._shapes``) plus V for the vocabulary size and E for the
embedding size. Tokens are integer ids in [0, V).
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

import rnnjax
from rnnjax._shapes import Array, Float, Int, PRNGKeyArray
from rnnjax.models._dropout import dropout

_LAYERS = {"rnn": rnnjax.RNN, "lstm": rnnjax.LSTM, "gru": rnnjax.GRU}


def _stack_of(cell_type, **cell_options):
    """A ``_LAYERS`` entry for a cell without a layer class of its own (``rnnjax.Stack``)."""
    return lambda hidden_size, num_layers, **options: rnnjax.Stack(
        cell=cell_type(hidden_size, **cell_options), num_layers=num_layers, **options
    )


# Linear recurrences (Feng et al. 2024; Orvieto et al. 2023): trained by the associative scan.
_LAYERS.update(
    mingru=_stack_of(rnnjax.cells.MinGRUCell),
    minlstm=_stack_of(rnnjax.cells.MinLSTMCell),
    lru=_stack_of(rnnjax.cells.LRUCell, activation="gelu"),  # a linear stack is one filter
)

_PRECISIONS = ("float32", "bfloat16")
_MIXED_PRECISION_CELLS = ("rnn", "lstm", "gru")


class CharLMParams(NamedTuple):
    """Parameters of ``CharLM``.

    Attributes:
      embed: ``[V, E]`` embedding table.
      rnn: per-layer cell parameters of the recurrent stack (``Recurrent.init``).
      w_out: ``[H, V]`` read-out weights.
      b_out: ``[V]`` read-out bias.
    """

    embed: Float[Array, "V E"]
    rnn: tuple
    w_out: Float[Array, "H V"]
    b_out: Float[Array, " V"]


@dataclasses.dataclass(frozen=True)
class CharLM:
    """Next-character model ``tokens [B, T] -> logits [B, T, V]``; holds static configuration only.

    Attributes:
      vocab_size: V.
      cell: ``"rnn"``, ``"lstm"``, ``"gru"``, or a linear recurrence (``rnnjax.Stack``):
        ``"mingru"``, ``"minlstm"``, ``"lru"``.
      hidden_size: H of every layer.
      num_layers: L.
      embed_size: E.
      dropout: rate applied, with a ``dropout_key``, to the embeddings, between recurrent layers
        and before the read-out (Zaremba et al., 2014: non-recurrent connections only).
      unroll: steps per scan iteration (``rnnjax.unroll``).
      input_dropout, recurrent_dropout, output_dropout, zoneout, weight_dropout: the recurrent
        stack's regularisers (``rnnjax.Recurrent``): variational dropout on each layer's inputs
        (the embeddings for the first), state and outputs, zoneout, DropConnect on ``w_hh``.
      precision: ``"float32"``, or ``"bfloat16"`` for the cells' two matmuls in bf16 with the
        state, gate math and parameters in float32 (``rnnjax.cells.MixedPrecisionCell``; ``rnn``,
        ``lstm`` and ``gru`` only). Parameters and checkpoints are the same in both.
    """

    vocab_size: int
    cell: str = "lstm"
    hidden_size: int = 256
    num_layers: int = 1
    embed_size: int = 64
    dropout: float = 0.0
    unroll: int = 1
    input_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    output_dropout: float = 0.0
    zoneout: float = 0.0
    weight_dropout: float = 0.0
    precision: str = "float32"

    def __post_init__(self):
        if self.cell not in _LAYERS:
            raise ValueError(f"cell must be one of {sorted(_LAYERS)}, got {self.cell!r}")
        if self.precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {_PRECISIONS}, got {self.precision!r}")
        if self.precision == "bfloat16" and self.cell not in _MIXED_PRECISION_CELLS:
            raise ValueError(
                f"precision='bfloat16' needs cell in {_MIXED_PRECISION_CELLS} (a fusable cell), "
                f"got cell={self.cell!r}"
            )
        for name in ("vocab_size", "hidden_size", "num_layers", "embed_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

    @property
    def layer(self) -> rnnjax.Recurrent:
        """The recurrent stack (between-layer dropout is the layer's own)."""
        options = dict(
            dropout=self.dropout,
            unroll=self.unroll,
            input_dropout=self.input_dropout,
            recurrent_dropout=self.recurrent_dropout,
            output_dropout=self.output_dropout,
            zoneout=self.zoneout,
            weight_dropout=self.weight_dropout,
        )
        layer = _LAYERS[self.cell](self.hidden_size, self.num_layers, **options)
        return rnnjax.with_compute_dtype(
            layer, jnp.bfloat16 if self.precision == "bfloat16" else None
        )

    def init(self, key: PRNGKeyArray) -> CharLMParams:
        """Returns parameters: N(0, 1) embeddings, PyTorch-default recurrent and read-out layers."""
        k_embed, k_rnn, k_out = jax.random.split(key, 3)
        bound = 1.0 / self.hidden_size**0.5  # torch.nn.Linear's default
        return CharLMParams(
            embed=jax.random.normal(k_embed, (self.vocab_size, self.embed_size)),
            rnn=self.layer.init(k_rnn, self.embed_size),
            w_out=jax.random.uniform(
                k_out, (self.hidden_size, self.vocab_size), minval=-bound, maxval=bound
            ),
            b_out=jnp.zeros((self.vocab_size,)),
        )

    def initial_state(self, batch_size: int):
        """Zero state of the stack, leaves ``[L, B, H]`` (as ``Recurrent.initial_state``)."""
        return self.layer.initial_state(batch_size)

    def apply(
        self,
        params: CharLMParams,
        tokens: Int[Array, "B T"],
        state=None,
        *,
        dropout_key: PRNGKeyArray | None = None,
    ):
        """Teacher-forced forward pass.

        Args:
          params: from ``init``.
          tokens: ``[B, T]`` input ids.
          state: the stack's state to start from (``initial_state`` layout); zeros when None.
          dropout_key: enables dropout; deterministic when None.

        Returns:
          ``(logits [B, T, V], state)`` with the stack's state after the last step.
        """
        x = params.embed[tokens]
        keys = (None,) * 3 if dropout_key is None else tuple(jax.random.split(dropout_key, 3))
        x = dropout(keys[0], self.dropout, x)
        x, state = self.layer(params.rnn, x, initial_state=state, dropout_key=keys[1])
        x = dropout(keys[2], self.dropout, x)
        logits = x @ params.w_out + params.b_out[None, None, :]
        return logits, state

    def step(self, params: CharLMParams, states: tuple, token: Int[Array, ""]):
        """One streaming step for one example with the cells' ``step`` API.

        Args:
          params: from ``init``.
          states: tuple of L per-layer cell states without batch axes (``stream_state()``).
          token: scalar input id.

        Returns:
          ``(states, logits [V])``.
        """
        x = params.embed[token]
        cell = self.layer.cell
        new_states = []
        z = self.zoneout
        for layer_params, state in zip(params.rnn, states, strict=True):
            new, x = cell.step(layer_params, state, x)
            if z:  # zoneout's expectation, as the layer computes it without a dropout key
                new = jax.tree.map(lambda old, n: z * old + (1.0 - z) * n, state, new)
                x = new.hidden if isinstance(new, rnnjax.LSTMState) else new
            new_states.append(new)
        return tuple(new_states), x @ params.w_out + params.b_out

    def stream_state(self) -> tuple:
        """Zero per-layer states of one example, for ``step``."""
        return tuple(self.layer.cell.initial_state() for _ in range(self.num_layers))

    def sample(
        self,
        params: CharLMParams,
        key: PRNGKeyArray,
        prompt: Int[Array, " P"],
        num_tokens: int,
        temperature: float = 1.0,
    ) -> Int[Array, " N"]:
        """Generates ``num_tokens`` ids after ``prompt``, carrying the state one token at a time.

        The prompt (P >= 1 ids) is fed teacher-forced; afterwards each sampled id is fed back.
        ``temperature`` divides the logits (lower is more conservative). Jit-compatible with
        ``num_tokens`` static.
        """
        prompt = jnp.asarray(prompt)
        states, _ = jax.lax.scan(
            lambda s, t: (self.step(params, s, t)[0], None), self.stream_state(), prompt[:-1]
        )

        def generate(carry, index):
            states, token = carry
            states, logits = self.step(params, states, token)
            sub = jax.random.fold_in(key, index)
            token = jax.random.categorical(sub, logits / temperature).astype(prompt.dtype)
            return (states, token), token

        _, tokens = jax.lax.scan(generate, (states, prompt[-1]), jnp.arange(num_tokens))
        return tokens
