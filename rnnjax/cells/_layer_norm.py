"""LayerNorm LSTM and GRU cells (Ba, Kiros & Hinton 2016, "Layer Normalization", section 3.1).

The input and the recurrent parts of the gate pre-activations are normalised SEPARATELY, each gate
on its own (as TensorFlow's ``LayerNormBasicLSTMCell``): ``LN(x W_ih) * a_ih + LN(h W_hh) * a_hh
+ b``, where ``LN(v) = (v - mean(v)) / sqrt(var(v) + eps)`` over the H units of one gate. The LSTM
also normalises the cell before the output nonlinearity: ``h' = o * tanh(LN(c') * a_c + b_c)``.
The normalisation's own shifts would add to ``b``, so only the cell's normalisation has one.

Both cells keep the split ``pointwise_step(..., h @ W_hh)`` (normalising ``h W_hh`` is pointwise
in it), so they are fusable: the fused backend runs them exactly (AUTO picks it on a GPU); the
native kernels do not know them (AUTO runs the scan on CPU).
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._shapes import Array, Float
from rnnjax.cells import _checks
from rnnjax.cells._base import Cell, init_cell_params
from rnnjax.cells._lstm import LSTMState


class LayerNormParams(NamedTuple):
    """Parameters of the LayerNorm cells (x @ W layout, gates along the last axis).

    Attributes:
      w_ih: ``[I, G*H]`` input weights.
      w_hh: ``[H, G*H]`` recurrent weights.
      b_ih: ``[G*H]`` input bias.
      b_hh: ``[G*H]`` recurrent bias; it adds to ``b_ih`` (PyTorch's two biases) except the
        GRU's ``b_hn``, which sits inside ``r * (...)``.
      scale_ih: ``[G*H]`` gains of the normalised input part (init 1).
      scale_hh: ``[G*H]`` gains of the normalised recurrent part (init 1).
      scale_cell: ``[H]`` gain of the normalised LSTM cell (``[0]`` for the GRU).
      shift_cell: ``[H]`` shift of the normalised LSTM cell (``[0]`` for the GRU).
    """

    w_ih: Float[Array, "I GH"]
    w_hh: Float[Array, "H GH"]
    b_ih: Float[Array, " GH"]
    b_hh: Float[Array, " GH"]
    scale_ih: Float[Array, " GH"]
    scale_hh: Float[Array, " GH"]
    scale_cell: Float[Array, " H"]
    shift_cell: Float[Array, " H"]


def layer_norm(v: Float[Array, "*T N"], num_groups: int, eps: float) -> Float[Array, "*T N"]:
    """Normalises each of the ``num_groups`` consecutive blocks of the last axis on its own."""
    blocks = jnp.reshape(v, v.shape[:-1] + (num_groups, v.shape[-1] // num_groups))
    mean = jnp.mean(blocks, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(blocks - mean), axis=-1, keepdims=True)
    return jnp.reshape((blocks - mean) * jax.lax.rsqrt(var + eps), v.shape)


def _init(cell, key, input_size: int, num_gates: int, cell_norm: bool) -> LayerNormParams:
    k_w, k_b = jax.random.split(key)
    p = init_cell_params(
        k_w,
        input_size,
        cell.hidden_size,
        num_gates,
        bias=True,
        input_init=cell.input_init,
        recurrent_init=cell.recurrent_init,
    )
    gh = num_gates * cell.hidden_size
    norm_size = cell.hidden_size if cell_norm else 0
    return LayerNormParams(
        p.w_ih,
        p.w_hh,
        p.b_ih,
        p.b_hh,
        jnp.ones((gh,)),
        jnp.ones((gh,)),
        jnp.ones((norm_size,)),
        jnp.zeros((norm_size,)),
    )


def _scaled(v, scale, num_groups: int, eps: float):
    return layer_norm(v, num_groups, eps) * jnp.reshape(scale, (1,) * (v.ndim - 1) + scale.shape)


@dataclasses.dataclass(frozen=True)
class LayerNormLSTMCell(Cell):
    """LSTM with layer normalisation, gates in PyTorch's order (i, f, g, o), for one example.

    z = LN(x W_ih) * a_ih + b_ih + LN(h W_hh) * a_hh + b_hh      (each gate normalised alone)
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g),   h' = sigmoid(o) * tanh(LN(c') * a_c + b_c)

    Attributes:
      hidden_size: H.
      eps: added to the variance in every normalisation.
      input_init, recurrent_init: initialisers of ``w_ih`` and ``w_hh`` (see ``LSTMCell``).

    State: ``LSTMState(hidden [H], cell [H])``; output ``[H]``. Parameters: ``LayerNormParams``.
    """

    hidden_size: int
    eps: float = 1e-5
    input_init: object = "uniform"
    recurrent_init: object = "uniform"

    def __post_init__(self):
        _checks.positive_int(self.hidden_size, "hidden_size")

    def init(self, key, input_size: int) -> LayerNormParams:
        return _init(self, key, input_size, 4, cell_norm=True)

    def initial_state(self, dtype=jnp.float32) -> LSTMState:
        zeros = jnp.zeros((self.hidden_size,), dtype)
        return LSTMState(zeros, zeros)

    def project_inputs(self, params: LayerNormParams, x):
        z = _scaled(x @ params.w_ih, params.scale_ih, 4, self.eps)
        bias = params.b_ih + params.b_hh
        return z + jnp.reshape(bias, (1,) * (z.ndim - 1) + bias.shape)

    def recurrent_step(self, params: LayerNormParams, state: LSTMState, projected):
        return self.pointwise_step(params, state, projected, state.hidden @ params.w_hh)

    @property
    def fusable(self) -> bool:
        return type(self).recurrent_step is LayerNormLSTMCell.recurrent_step

    def recurrent_input(self, state: LSTMState):
        return state.hidden

    def recurrent_weight(self, params: LayerNormParams):
        return params.w_hh

    def pointwise_step(self, params: LayerNormParams, state: LSTMState, projected, hw):
        z = projected + _scaled(hw, params.scale_hh, 4, self.eps)
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * state.cell + jax.nn.sigmoid(i) * jnp.tanh(g)
        c_norm = _scaled(c, params.scale_cell, 1, self.eps) + params.shift_cell
        h = jax.nn.sigmoid(o) * jnp.tanh(c_norm)
        return LSTMState(h, c), h


@dataclasses.dataclass(frozen=True)
class LayerNormGRUCell(Cell):
    """GRU with layer normalisation in the reset-after form, gates (r, z, n), for one example.

    r, z = sigmoid(LN(x W_i) * a_i + b_i + LN(h W_h) * a_h + b_h)      (gates r and z)
    n = tanh(LN(x W_in) * a_in + b_in + r * (LN(h W_hn) * a_hn + b_hn))
    h' = (1 - z) * n + z * h

    Attributes:
      hidden_size: H.
      eps: added to the variance in every normalisation.
      input_init, recurrent_init: initialisers of ``w_ih`` and ``w_hh`` (see ``GRUCell``).

    State and output: ``h [H]``. Parameters: ``LayerNormParams`` (``scale_cell`` and
    ``shift_cell`` empty).
    """

    hidden_size: int
    eps: float = 1e-5
    input_init: object = "uniform"
    recurrent_init: object = "uniform"

    def __post_init__(self):
        _checks.positive_int(self.hidden_size, "hidden_size")

    def init(self, key, input_size: int) -> LayerNormParams:
        return _init(self, key, input_size, 3, cell_norm=False)

    def initial_state(self, dtype=jnp.float32):
        return jnp.zeros((self.hidden_size,), dtype)

    def project_inputs(self, params: LayerNormParams, x):
        z = _scaled(x @ params.w_ih, params.scale_ih, 3, self.eps)
        # b_hn sits inside r * (...), so only b_hr and b_hz fold in here (as GRUCell).
        h2 = 2 * self.hidden_size
        bias = jnp.concatenate([params.b_ih[:h2] + params.b_hh[:h2], params.b_ih[h2:]])
        return z + jnp.reshape(bias, (1,) * (z.ndim - 1) + bias.shape)

    def recurrent_step(self, params: LayerNormParams, state, projected):
        return self.pointwise_step(params, state, projected, state @ params.w_hh)

    @property
    def fusable(self) -> bool:
        return type(self).recurrent_step is LayerNormGRUCell.recurrent_step

    def recurrent_input(self, state):
        return state

    def recurrent_weight(self, params: LayerNormParams):
        return params.w_hh

    def pointwise_step(self, params: LayerNormParams, state, projected, hw):
        h2 = 2 * self.hidden_size
        hw = _scaled(hw, params.scale_hh, 3, self.eps)
        r, z = jnp.split(jax.nn.sigmoid(projected[..., :h2] + hw[..., :h2]), 2, axis=-1)
        n = jnp.tanh(projected[..., h2:] + r * (hw[..., h2:] + params.b_hh[h2:]))
        h = (1.0 - z) * n + z * state
        return h, h
