"""The cell protocol: what a recurrent cell is in rnnjax, and the parameters of the built-in cells.

A cell is a frozen (hashable) dataclass of static configuration whose methods are pure functions of
ONE example. Batches go through ``jax.vmap``, time through ``jax.lax.scan`` (``rnnjax.unroll`` does
the scan and the padding), layers by composition (``rnnjax.LSTM`` and friends). A new cell
implements four methods and inherits ``step``; everything built on cells (unroll, layers, models,
training) then works for it::

    cell = rnnjax.cells.LSTMCell(hidden_size=H)
    params = cell.init(key, input_size=I)
    state = cell.initial_state()
    def body(state, x):                      # x: [I]
        return cell.step(params, state, x)   # -> (state, output [H])
    state, outputs = jax.lax.scan(body, state, xs)   # xs: [T, I], outputs: [T, H]
"""

import abc
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._shapes import Array, Float, PRNGKeyArray
from rnnjax.cells import _checks, _initializers


class CellParams(NamedTuple):
    """Parameters of the built-in cells, in JAX's ``x @ W`` layout (PyTorch stores ``W.T``).

    Gates are laid out along the last axis in PyTorch's order: LSTM (i, f, g, o), GRU (r, z, n).

    Attributes:
      w_ih: ``[I, G*H]`` input-to-hidden weights.
      w_hh: ``[P, G*H]`` hidden-to-hidden weights (P = H without projection).
      b_ih: ``[G*H]`` or None when ``bias=False``.
      b_hh: ``[G*H]`` or None when ``bias=False``.
      w_hr: ``[H, P]`` LSTM projection, or None.
    """

    w_ih: Float[Array, "I GH"]
    w_hh: Float[Array, "P GH"]
    b_ih: Float[Array, " GH"] | None = None
    b_hh: Float[Array, " GH"] | None = None
    w_hr: Float[Array, "H P"] | None = None


State = Any  # a pytree of arrays without batch axes, e.g. [H] or LSTMState([P], [H])


class Cell(abc.ABC):
    """Protocol of a recurrent cell; subclasses are frozen dataclasses with a ``hidden_size`` field.

    The work of one time step is split in two so that layers can move the input half out of the
    sequential loop: ``project_inputs`` holds everything that depends on the input only, and may
    be applied to one step ``[I]`` or to a whole sequence ``[T, I]`` in one matmul;
    ``recurrent_step`` holds everything that depends on the previous state.
    """

    hidden_size: int

    @property
    def output_size(self) -> int:
        """Features of the output of one step (and of the ``hidden`` part of the state)."""
        return self.hidden_size

    @abc.abstractmethod
    def init(self, key: PRNGKeyArray, input_size: int) -> Any:
        """Returns the parameter pytree for inputs of ``input_size`` features."""

    @abc.abstractmethod
    def initial_state(self, dtype=jnp.float32) -> State:
        """Returns the zero state of one example."""

    @abc.abstractmethod
    def project_inputs(self, params, x: Float[Array, "*T I"]) -> Float[Array, "*T GH"]:
        """The input-only part of a step: ``[I] -> [G*H]`` or ``[T, I] -> [T, G*H]``."""

    @abc.abstractmethod
    def recurrent_step(self, params, state: State, projected: Float[Array, " GH"]):
        """One step from a projected input: returns ``(new_state, output [output_size])``."""

    # Optional split of ``recurrent_step`` used by the fused backend (``backends._fused_vjp``): a
    # cell whose step is ``pointwise_step(params, state, projected, recurrent_input(state) @ W)``
    # with ``W = recurrent_weight(params)`` says so with ``fusable``; its backward pass then runs
    # the ``W`` matmul once per step plus large matmuls after the scan. ``pointwise_step`` may
    # hold further matmuls (the LSTM's projection, the reset-before GRU's ``(r*h) W_hn``): the
    # fused backend differentiates them step by step; ``one_state_matmul`` says there are none.
    @property
    def fusable(self) -> bool:
        """Whether the cell implements the split below (False unless a cell opts in)."""
        return False

    @property
    def one_state_matmul(self) -> bool:
        """Whether ``recurrent_input(state) @ recurrent_weight(params)`` is the step's only
        matmul (a fusable cell without others): what the native and cuDNN kernels compute, and
        where recurrent dropout masks the whole recurrent input."""
        return self.fusable

    def recurrent_input(self, state: State) -> Float[Array, " P"]:
        """The part of the state that multiplies ``recurrent_weight`` (fusable cells only)."""
        raise NotImplementedError(f"{type(self).__name__} is not fusable")

    def recurrent_weight(self, params) -> Float[Array, "P GH"]:
        """The weight of the state matmul done outside ``pointwise_step`` (fusable cells only)."""
        raise NotImplementedError(f"{type(self).__name__} is not fusable")

    def pointwise_step(self, params, state: State, projected, hw: Float[Array, " GH"]):
        """``recurrent_step`` given ``hw = recurrent_input(state) @ recurrent_weight(params)``."""
        raise NotImplementedError(f"{type(self).__name__} is not fusable")

    def step(self, params, state: State, x: Float[Array, " I"]):
        """One step from a raw input ``[I]``, for streaming: returns ``(new_state, output)``."""
        return self.recurrent_step(params, state, self.project_inputs(params, x))


class HiddenStateCell(Cell):
    """A cell with ``CellParams`` of ``num_gates`` gate blocks and one state vector ``h [H]``
    (Elman, GRU, MGU); subclasses are dataclasses with the fields ``hidden_size``, ``bias``,
    ``input_init`` and ``recurrent_init``."""

    num_gates: ClassVar[int]

    def __post_init__(self):
        _checks.positive_int(self.hidden_size, "hidden_size")

    def init(self, key: PRNGKeyArray, input_size: int) -> CellParams:
        return init_cell_params(
            key,
            input_size,
            self.hidden_size,
            self.num_gates,
            bias=self.bias,
            input_init=self.input_init,
            recurrent_init=self.recurrent_init,
        )

    def initial_state(self, dtype=jnp.float32):
        return jnp.zeros((self.hidden_size,), dtype)

    def recurrent_step(self, params: CellParams, state, projected):
        return self.pointwise_step(params, state, projected, state @ self.recurrent_weight(params))

    @property
    def fusable(self) -> bool:
        # A subclass with its own recurrent_step no longer matches pointwise_step.
        return type(self).recurrent_step is HiddenStateCell.recurrent_step

    def recurrent_input(self, state):
        return state


def init_cell_params(
    key: PRNGKeyArray,
    input_size: int,
    hidden_size: int,
    num_gates: int,
    *,
    bias: bool,
    input_init,
    recurrent_init,
    recurrent_rows: int | None = None,
    dtype=jnp.float32,
) -> CellParams:
    """Initialises ``CellParams`` (without projection) for a gated cell.

    Args:
      key: PRNG key.
      input_size: I.
      hidden_size: H.
      num_gates: G.
      bias: whether to create ``b_ih`` and ``b_hh``.
      input_init: initialiser name or callable for the ``[I, H]`` gate blocks of ``w_ih``.
      recurrent_init: initialiser name or callable for the ``[P, H]`` gate blocks of ``w_hh``.
      recurrent_rows: P, the size of the recurrent input (defaults to H).
      dtype: parameter dtype.

    Returns:
      ``CellParams`` with ``w_hr=None``.
    """
    input_fn = _initializers.resolve(input_init, hidden_size, "input_init")
    recurrent_fn = _initializers.resolve(recurrent_init, hidden_size, "recurrent_init")
    bias_fn = _initializers.torch_uniform(hidden_size)
    k_ih, k_hh, k_bih, k_bhh = jax.random.split(key, 4)
    rows = hidden_size if recurrent_rows is None else recurrent_rows
    blocks = _initializers.gate_blocks
    w_ih = blocks(input_fn, k_ih, input_size, hidden_size, num_gates, dtype)
    w_hh = blocks(recurrent_fn, k_hh, rows, hidden_size, num_gates, dtype)
    if not bias:
        return CellParams(w_ih, w_hh)
    gh = num_gates * hidden_size
    return CellParams(w_ih, w_hh, bias_fn(k_bih, (gh,), dtype), bias_fn(k_bhh, (gh,), dtype))


def affine(x: Float[Array, "*T I"], w: Float[Array, "I N"], b: Float[Array, " N"] | None):
    """``x @ w + b`` for one step or a whole sequence; ``b`` may be None."""
    y = x @ w
    # Explicit leading axes: rnnjax runs with jax_numpy_rank_promotion="raise" in its tests.
    return y if b is None else y + jnp.reshape(b, (1,) * (y.ndim - 1) + b.shape)
