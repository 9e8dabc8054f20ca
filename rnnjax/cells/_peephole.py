"""Peephole LSTM (Gers & Schmidhuber 2000): the gates also read the cell state.

    i = sigmoid(z_i + p_i * c),  f = sigmoid(z_f + p_f * c),  c' = f * c + i * tanh(z_g)
    o = sigmoid(z_o + p_o * c'),  h' = o * tanh(c')

with ``z = x W_ih + b + h W_hh`` in PyTorch's gate order (i, f, g, o); the output gate peeks at
the NEW cell. The peepholes are element-wise (diagonal), so the step keeps the split
``pointwise_step(..., h @ W_hh)``: the cell is fusable (the fused backend runs it exactly, and
AUTO picks it on a GPU); the native kernels do not know it (AUTO runs the scan on CPU).
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._shapes import Array, Float
from rnnjax.cells import _checks, _initializers
from rnnjax.cells._base import Cell, affine, init_cell_params
from rnnjax.cells._lstm import LSTMState


class PeepholeParams(NamedTuple):
    """Parameters of ``PeepholeLSTMCell``.

    Attributes:
      w_ih: ``[I, 4H]`` input weights.
      w_hh: ``[H, 4H]`` recurrent weights.
      b: ``[4H]`` bias.
      w_peep: ``[3, H]`` peepholes of the i, f and o gates.
    """

    w_ih: Float[Array, "I GH"]
    w_hh: Float[Array, "H GH"]
    b: Float[Array, " GH"]
    w_peep: Float[Array, "3 H"]


@dataclasses.dataclass(frozen=True)
class PeepholeLSTMCell(Cell):
    """Peephole LSTM cell for one example (equations in the module docstring).

    Attributes:
      hidden_size: H.
      input_init, recurrent_init: initialisers of ``w_ih`` and ``w_hh`` (see ``LSTMCell``);
        the bias and the peepholes are drawn from U(-1/sqrt(H), 1/sqrt(H)), as PyTorch's LSTM.

    State: ``LSTMState(hidden [H], cell [H])``; output ``[H]``.
    """

    hidden_size: int
    input_init: object = "uniform"
    recurrent_init: object = "uniform"

    def __post_init__(self):
        _checks.positive_int(self.hidden_size, "hidden_size")

    def init(self, key, input_size: int) -> PeepholeParams:
        k_w, k_b, k_peep = jax.random.split(key, 3)
        h = self.hidden_size
        p = init_cell_params(
            k_w,
            input_size,
            h,
            4,
            bias=False,
            input_init=self.input_init,
            recurrent_init=self.recurrent_init,
        )
        uniform = _initializers.torch_uniform(h)
        return PeepholeParams(
            p.w_ih, p.w_hh, uniform(k_b, (4 * h,), jnp.float32), uniform(k_peep, (3, h))
        )

    def initial_state(self, dtype=jnp.float32) -> LSTMState:
        zeros = jnp.zeros((self.hidden_size,), dtype)
        return LSTMState(zeros, zeros)

    def project_inputs(self, params: PeepholeParams, x):
        return affine(x, params.w_ih, params.b)

    def recurrent_step(self, params: PeepholeParams, state: LSTMState, projected):
        return self.pointwise_step(params, state, projected, state.hidden @ params.w_hh)

    @property
    def fusable(self) -> bool:
        return type(self).recurrent_step is PeepholeLSTMCell.recurrent_step

    def recurrent_input(self, state: LSTMState):
        return state.hidden

    def recurrent_weight(self, params: PeepholeParams):
        return params.w_hh

    def pointwise_step(self, params: PeepholeParams, state: LSTMState, projected, hw):
        i, f, g, o = jnp.split(projected + hw, 4, axis=-1)
        p_i, p_f, p_o = params.w_peep
        c = jax.nn.sigmoid(f + p_f * state.cell) * state.cell
        c = c + jax.nn.sigmoid(i + p_i * state.cell) * jnp.tanh(g)
        h = jax.nn.sigmoid(o + p_o * c) * jnp.tanh(c)
        return LSTMState(h, c), h
