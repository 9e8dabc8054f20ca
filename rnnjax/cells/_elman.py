"""Elman RNN cell: h' = act(x W_ih + b_ih + h W_hh + b_hh), as torch.nn.RNNCell."""

import dataclasses

import jax
import jax.numpy as jnp

from rnnjax.cells import _checks
from rnnjax.cells._base import CellParams, HiddenStateCell, affine

NONLINEARITIES = {"tanh": jnp.tanh, "relu": jax.nn.relu}


@dataclasses.dataclass(frozen=True)
class ElmanCell(HiddenStateCell):
    """Elman (vanilla) RNN cell for one example.

    Attributes:
      hidden_size: H.
      nonlinearity: ``"tanh"`` or ``"relu"``.
      bias: whether the cell has ``b_ih`` and ``b_hh``.
      input_init: initialiser of ``w_ih`` (``"uniform"`` as PyTorch, ``"glorot_uniform"``, or a
        callable).
      recurrent_init: initialiser of ``w_hh`` (``"uniform"``, ``"orthogonal"`` or a callable).

    State and output are both ``h: [H]``.
    """

    hidden_size: int
    nonlinearity: str = "tanh"
    bias: bool = True
    input_init: object = "uniform"
    recurrent_init: object = "uniform"

    num_gates = 1

    def __post_init__(self):
        super().__post_init__()
        _checks.one_of(self.nonlinearity, NONLINEARITIES, "nonlinearity")

    def project_inputs(self, params: CellParams, x):
        bias = None if params.b_ih is None else params.b_ih + params.b_hh
        return affine(x, params.w_ih, bias)

    def recurrent_weight(self, params: CellParams):
        return params.w_hh

    def pointwise_step(self, params: CellParams, state, projected, hw):
        h = NONLINEARITIES[self.nonlinearity](projected + hw)
        return h, h
