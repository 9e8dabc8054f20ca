"""LSTM cell (with optional projection, LSTMP), as torch.nn.LSTM computes one step."""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._shapes import Array, Float
from rnnjax.cells import _checks, _initializers
from rnnjax.cells._base import Cell, CellParams, affine, init_cell_params


class LSTMState(NamedTuple):
    """LSTM state of one example: ``hidden [P]`` (P = H without projection) and ``cell [H]``.

    A layer's final state is an ``LSTMState`` whose leaves are ``[L*D, B, ...]``; being a tuple it
    unpacks as PyTorch's ``(h_n, c_n)``.
    """

    hidden: Float[Array, "*B P"]
    cell: Float[Array, "*B H"]


@dataclasses.dataclass(frozen=True)
class LSTMCell(Cell):
    """LSTM cell for one example, gates in PyTorch's order (i, f, g, o).

    c' = f*c + i*g,  h' = o*tanh(c'),  and with ``proj_size`` P > 0, h' = (o*tanh(c')) W_hr.

    Attributes:
      hidden_size: H.
      bias: whether the cell has ``b_ih`` and ``b_hh``.
      proj_size: P; 0 for none. Must be below H, as in PyTorch.
      forget_bias: if set, the initial total forget-gate bias (``b_ih + b_hh`` of gate f), e.g. 1.0.
      input_init: initialiser of ``w_ih`` (``"uniform"``, ``"glorot_uniform"`` or a callable).
      recurrent_init: initialiser of ``w_hh`` (``"uniform"``, ``"orthogonal"`` or a callable).
      chrono_init: if set, T_max of the chrono initialisation (Tallec & Ollivier 2018): the total
        forget-gate bias is log(u), u ~ U[1, T_max - 1], and the input-gate bias its negative, so
        that the cell's memory spans time scales up to about T_max steps at initialisation.
    """

    hidden_size: int
    bias: bool = True
    proj_size: int = 0
    forget_bias: float | None = None
    input_init: object = "uniform"
    recurrent_init: object = "uniform"
    chrono_init: float | None = None

    def __post_init__(self):
        _checks.positive_int(self.hidden_size, "hidden_size")
        if not 0 <= self.proj_size < self.hidden_size:
            raise ValueError(
                f"proj_size must be in [0, hidden_size={self.hidden_size}), got {self.proj_size!r}"
            )
        if self.forget_bias is not None and not self.bias:
            raise ValueError("forget_bias needs bias=True, got bias=False")
        if self.chrono_init is not None:
            if not self.bias:
                raise ValueError("chrono_init needs bias=True, got bias=False")
            if self.forget_bias is not None:
                raise ValueError("chrono_init and forget_bias both set the forget bias: give one")
            if not self.chrono_init > 2:
                raise ValueError(f"chrono_init (T_max) must be above 2, got {self.chrono_init!r}")

    @property
    def output_size(self) -> int:
        return self.proj_size or self.hidden_size

    def init(self, key, input_size: int) -> CellParams:
        k_cell, k_proj = jax.random.split(key)
        h = self.hidden_size
        params = init_cell_params(
            k_cell,
            input_size,
            h,
            4,
            bias=self.bias,
            recurrent_rows=self.output_size,
            input_init=self.input_init,
            recurrent_init=self.recurrent_init,
        )
        if self.forget_bias is not None:
            params = params._replace(
                b_ih=params.b_ih.at[h : 2 * h].set(self.forget_bias),
                b_hh=params.b_hh.at[h : 2 * h].set(0.0),
            )
        if self.chrono_init is not None:
            params = _chrono_biases(jax.random.fold_in(key, 1), params, h, self.chrono_init)
        if self.proj_size:
            w_hr = _initializers.torch_uniform(h)(k_proj, (h, self.proj_size), jnp.float32)
            params = params._replace(w_hr=w_hr)
        return params

    def initial_state(self, dtype=jnp.float32) -> LSTMState:
        return LSTMState(
            jnp.zeros((self.output_size,), dtype), jnp.zeros((self.hidden_size,), dtype)
        )

    def project_inputs(self, params: CellParams, x):
        bias = None if params.b_ih is None else params.b_ih + params.b_hh
        return affine(x, params.w_ih, bias)

    def recurrent_step(self, params: CellParams, state: LSTMState, projected):
        return self.pointwise_step(params, state, projected, state.hidden @ params.w_hh)

    @property
    def fusable(self) -> bool:
        # A subclass with its own recurrent_step (e.g. a peephole LSTM) no longer matches
        # pointwise_step.
        return type(self).recurrent_step is LSTMCell.recurrent_step

    @property
    def one_state_matmul(self) -> bool:
        # The projection h W_hr is a second matmul per step, inside pointwise_step.
        return self.fusable and not self.proj_size

    def recurrent_input(self, state: LSTMState):
        return state.hidden

    def recurrent_weight(self, params: CellParams):
        return params.w_hh

    def pointwise_step(self, params: CellParams, state: LSTMState, projected, hw):
        z = projected + hw
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * state.cell + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        if self.proj_size:
            h = h @ params.w_hr
        return LSTMState(h, c), h


def _chrono_biases(key, params: CellParams, h: int, t_max: float) -> CellParams:
    """Forget bias log(U[1, T_max - 1]) and input bias its negative, held in ``b_ih``."""
    forget = jnp.log(jax.random.uniform(key, (h,), params.b_ih.dtype, 1.0, t_max - 1.0))
    b_ih = params.b_ih.at[:h].set(-forget).at[h : 2 * h].set(forget)
    return params._replace(b_ih=b_ih, b_hh=params.b_hh.at[: 2 * h].set(0.0))
