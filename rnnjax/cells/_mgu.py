"""Minimal gated unit (Zhou, Wu, Zhang & Zhou 2016): a GRU whose one gate both forgets and resets.

    f = sigmoid(x W_if + b_if + h W_hf + b_hf)
    n = tanh(x W_in + b_in + (f * h) W_hn + b_hn)
    h' = (1 - f) * h + f * n

The candidate multiplies ``f * h`` by ``W_hn`` inside the step (a second, gate-dependent matmul,
like the reset-before GRU): the cell is fusable with ``h W_hf`` as its recurrent matmul and
``W_hn`` differentiated inside ``pointwise_step``; the native and cuDNN kernels do not run it.
"""

import dataclasses

import jax
import jax.numpy as jnp

from rnnjax.cells._base import CellParams, HiddenStateCell, affine


@dataclasses.dataclass(frozen=True)
class MGUCell(HiddenStateCell):
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

    num_gates = 2

    def project_inputs(self, params: CellParams, x):
        bias = None if params.b_ih is None else params.b_ih + params.b_hh
        return affine(x, params.w_ih, bias)

    @property
    def one_state_matmul(self) -> bool:
        return False  # (f * h) W_hn is a second matmul inside pointwise_step

    def recurrent_weight(self, params: CellParams):
        return params.w_hh[:, : self.hidden_size]

    def pointwise_step(self, params: CellParams, state, projected, hw):
        h = self.hidden_size
        f = jax.nn.sigmoid(projected[..., :h] + hw)
        n = jnp.tanh(projected[..., h:] + (f * state) @ params.w_hh[:, h:])
        new = (1.0 - f) * state + f * n
        return new, new
