"""Minimal gated unit (Zhou, Wu, Zhang & Zhou 2016): a GRU whose one gate both forgets and resets.

    f = sigmoid(x W_if + b_if + h W_hf + b_hf)
    n = tanh(x W_in + b_in + (f * h) W_hn + b_hn)
    h' = (1 - f) * h + f * n

The candidate multiplies ``f * h`` by ``W_hn`` inside the step (a second, gate-dependent matmul,
like the reset-before GRU), so the cell is not fusable: every backend but the scan refuses it.
"""

import dataclasses

import jax
import jax.numpy as jnp

from rnnjax.cells import _checks
from rnnjax.cells._base import Cell, CellParams, affine, init_cell_params


@dataclasses.dataclass(frozen=True)
class MGUCell(Cell):
    """Minimal gated unit for one example, gates (f, n) (equations in the module docstring).

    Attributes:
      hidden_size: H.
      bias: whether the cell has ``b_ih`` and ``b_hh`` (``[2H]`` each).
      input_init, recurrent_init: initialisers of ``w_ih [I, 2H]`` and ``w_hh [H, 2H]``.

    State and output: ``h [H]``. Parameters: ``CellParams`` with G = 2.
    """

    hidden_size: int
    bias: bool = True
    input_init: object = "uniform"
    recurrent_init: object = "uniform"

    def __post_init__(self):
        _checks.positive_int(self.hidden_size, "hidden_size")

    def init(self, key, input_size: int) -> CellParams:
        return init_cell_params(
            key,
            input_size,
            self.hidden_size,
            2,
            bias=self.bias,
            input_init=self.input_init,
            recurrent_init=self.recurrent_init,
        )

    def initial_state(self, dtype=jnp.float32):
        return jnp.zeros((self.hidden_size,), dtype)

    def project_inputs(self, params: CellParams, x):
        bias = None if params.b_ih is None else params.b_ih + params.b_hh
        return affine(x, params.w_ih, bias)

    def recurrent_step(self, params: CellParams, state, projected):
        h = self.hidden_size
        f = jax.nn.sigmoid(projected[..., :h] + state @ params.w_hh[:, :h])
        n = jnp.tanh(projected[..., h:] + (f * state) @ params.w_hh[:, h:])
        new = (1.0 - f) * state + f * n
        return new, new
