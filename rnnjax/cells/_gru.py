"""GRU cell in PyTorch/cuDNN form (reset after the matmul) or in the form of Cho et al. (2014)."""

import dataclasses

import jax
import jax.numpy as jnp

from rnnjax.cells._base import CellParams, HiddenStateCell, affine


@dataclasses.dataclass(frozen=True)
class GRUCell(HiddenStateCell):
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

    num_gates = 3

    def project_inputs(self, params: CellParams, x):
        if params.b_ih is None:
            return affine(x, params.w_ih, None)
        if not self.reset_after:
            return affine(x, params.w_ih, params.b_ih + params.b_hh)
        # b_hn sits inside r * (...) in the reset-after form, so only b_hr and b_hz fold in here.
        h2 = 2 * self.hidden_size
        b_rz = params.b_ih[:h2] + params.b_hh[:h2]
        return affine(x, params.w_ih, jnp.concatenate([b_rz, params.b_ih[h2:]]))

    @property
    def one_state_matmul(self) -> bool:
        # Reset-before multiplies r * h by W_hn inside pointwise_step: a second matmul.
        return self.fusable and self.reset_after

    def recurrent_weight(self, params: CellParams):
        """``W_hh`` (reset-after), or its r and z blocks (reset-before: ``W_hn`` multiplies
        ``r * h`` in ``pointwise_step``)."""
        return params.w_hh if self.reset_after else params.w_hh[:, : 2 * self.hidden_size]

    def pointwise_step(self, params: CellParams, state, projected, hw):
        h2 = 2 * self.hidden_size
        x_rz, x_n = projected[..., :h2], projected[..., h2:]
        r, z = jnp.split(jax.nn.sigmoid(x_rz + hw[..., :h2]), 2, axis=-1)
        if self.reset_after:
            hw_n = hw[..., h2:] if params.b_hh is None else hw[..., h2:] + params.b_hh[h2:]
            n = jnp.tanh(x_n + r * hw_n)
        else:
            n = jnp.tanh(x_n + (r * state) @ params.w_hh[:, h2:])
        h = (1.0 - z) * n + z * state
        return h, h
