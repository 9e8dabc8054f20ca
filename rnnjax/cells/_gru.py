"""GRU cell in PyTorch/cuDNN form (reset after the matmul) or in the form of Cho et al. (2014)."""

import dataclasses

import jax
import jax.numpy as jnp

from rnnjax.cells import _checks
from rnnjax.cells._base import Cell, CellParams, affine, init_cell_params


@dataclasses.dataclass(frozen=True)
class GRUCell(Cell):
    """GRU cell for one example, gates in PyTorch's order (r, z, n).

    r = sigmoid(x W_ir + b_ir + h W_hr + b_hr)
    z = sigmoid(x W_iz + b_iz + h W_hz + b_hz)
    n = tanh(x W_in + b_in + r * (h W_hn + b_hn))        reset_after=True (PyTorch, cuDNN)
    n = tanh(x W_in + b_in + (r * h) W_hn + b_hn)        reset_after=False (Cho et al. 2014)
    h' = (1 - z) * n + z * h

    Attributes:
      hidden_size: H.
      bias: whether the cell has ``b_ih`` and ``b_hh``.
      reset_after: which of the two forms above.
      input_init: initialiser of ``w_ih`` (``"uniform"``, ``"glorot_uniform"`` or a callable).
      recurrent_init: initialiser of ``w_hh`` (``"uniform"``, ``"orthogonal"`` or a callable).

    State and output are both ``h: [H]``.
    """

    hidden_size: int
    bias: bool = True
    reset_after: bool = True
    input_init: object = "uniform"
    recurrent_init: object = "uniform"

    def __post_init__(self):
        _checks.positive_int(self.hidden_size, "hidden_size")

    def init(self, key, input_size: int) -> CellParams:
        return init_cell_params(
            key,
            input_size,
            self.hidden_size,
            3,
            bias=self.bias,
            input_init=self.input_init,
            recurrent_init=self.recurrent_init,
        )

    def initial_state(self, dtype=jnp.float32):
        return jnp.zeros((self.hidden_size,), dtype)

    def project_inputs(self, params: CellParams, x):
        if params.b_ih is None:
            return affine(x, params.w_ih, None)
        if not self.reset_after:
            return affine(x, params.w_ih, params.b_ih + params.b_hh)
        # b_hn sits inside r * (...) in the reset-after form, so only b_hr and b_hz fold in here.
        h2 = 2 * self.hidden_size
        b_rz = params.b_ih[:h2] + params.b_hh[:h2]
        return affine(x, params.w_ih, jnp.concatenate([b_rz, params.b_ih[h2:]]))

    def recurrent_step(self, params: CellParams, state, projected):
        if self.reset_after:
            return self.pointwise_step(params, state, projected, state @ params.w_hh)
        h2 = 2 * self.hidden_size
        x_rz, x_n = projected[..., :h2], projected[..., h2:]
        r, z = jnp.split(jax.nn.sigmoid(x_rz + state @ params.w_hh[:, :h2]), 2, axis=-1)
        n = jnp.tanh(x_n + (r * state) @ params.w_hh[:, h2:])
        h = (1.0 - z) * n + z * state
        return h, h

    @property
    def fusable(self) -> bool:
        # Reset-before multiplies r * h by W_hn inside the step: a second, state-dependent matmul.
        return self.reset_after and type(self).recurrent_step is GRUCell.recurrent_step

    def recurrent_input(self, state):
        return state

    def recurrent_weight(self, params: CellParams):
        return params.w_hh

    def pointwise_step(self, params: CellParams, state, projected, hw):
        h2 = 2 * self.hidden_size
        x_rz, x_n = projected[..., :h2], projected[..., h2:]
        r, z = jnp.split(jax.nn.sigmoid(x_rz + hw[..., :h2]), 2, axis=-1)
        hw_n = hw[..., h2:] if params.b_hh is None else hw[..., h2:] + params.b_hh[h2:]
        n = jnp.tanh(x_n + r * hw_n)
        h = (1.0 - z) * n + z * state
        return h, h
