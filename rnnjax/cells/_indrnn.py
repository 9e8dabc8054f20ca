"""IndRNN (Li, Li, Cook, Zhu & Gao 2018): each unit recurs only on itself.

    h' = act(x W_ih + b + u * h)          (u: [H], element-wise; act relu by default)

Li et al. bound the recurrent weights so that a unit's memory neither explodes nor vanishes over
T steps: with relu, |u| <= 2^(1/T) keeps a unit's gradient over T steps at most 2 (they clip u
after each optimiser update). Here the bound is applied as a CLIP IN THE STEP (``clip(u, -B, B)``),
so it holds whatever the optimiser does and ``params`` need no projection; a weight past the bound
gets no gradient until the optimiser brings it back. ``u`` is initialised inside the bound.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._shapes import Array, Float
from rnnjax.cells import _checks, _initializers
from rnnjax.cells._base import Cell, affine
from rnnjax.cells._elman import NONLINEARITIES


class IndRNNParams(NamedTuple):
    """Parameters of ``IndRNNCell``.

    Attributes:
      w_ih: ``[I, H]`` input weights.
      w_hh: ``[H]`` the diagonal recurrent weights u (named as the other cells' recurrent
        weights, so that layer options such as ``weight_dropout`` apply to it).
      b: ``[H]`` bias.
    """

    w_ih: Float[Array, "I H"]
    w_hh: Float[Array, " H"]
    b: Float[Array, " H"]


@dataclasses.dataclass(frozen=True)
class IndRNNCell(Cell):
    """Independently recurrent cell for one example (equations in the module docstring).

    Attributes:
      hidden_size: H.
      nonlinearity: ``"relu"`` (Li et al.) or ``"tanh"``.
      max_steps: T of the bound |u| <= 2^(1/T) (Li et al.'s constraint for relu), or None.
      recurrent_bound: a bound B on |u| given directly, or None (not with ``max_steps``).
        Without either, u is unconstrained and initialised in U(0, 1).
      input_init: initialiser of ``w_ih`` (see ``ElmanCell``).

    State and output: ``h [H]``.
    """

    hidden_size: int
    nonlinearity: str = "relu"
    max_steps: int | None = None
    recurrent_bound: float | None = None
    input_init: object = "uniform"

    def __post_init__(self):
        _checks.positive_int(self.hidden_size, "hidden_size")
        _checks.one_of(self.nonlinearity, NONLINEARITIES, "nonlinearity")
        if self.max_steps is not None:
            _checks.positive_int(self.max_steps, "max_steps")
            if self.recurrent_bound is not None:
                raise ValueError(
                    "pass max_steps or recurrent_bound, not both; got "
                    f"max_steps={self.max_steps!r}, recurrent_bound={self.recurrent_bound!r}"
                )
        if self.recurrent_bound is not None and not (
            isinstance(self.recurrent_bound, int | float) and self.recurrent_bound > 0
        ):
            raise ValueError(
                f"recurrent_bound must be a positive number, got {self.recurrent_bound!r}"
            )

    @property
    def bound(self) -> float | None:
        """The bound on |u|: ``recurrent_bound``, ``2 ** (1 / max_steps)``, or None."""
        if self.max_steps is not None:
            return 2.0 ** (1.0 / self.max_steps)
        return self.recurrent_bound

    def init(self, key, input_size: int) -> IndRNNParams:
        k_ih, k_hh, k_b = jax.random.split(key, 3)
        h = self.hidden_size
        w_ih = _initializers.resolve(self.input_init, h, "input_init")(k_ih, (input_size, h))
        high = 1.0 if self.bound is None else min(1.0, self.bound)
        u = jax.random.uniform(k_hh, (h,), minval=0.0, maxval=high)
        return IndRNNParams(w_ih, u, _initializers.torch_uniform(h)(k_b, (h,)))

    def initial_state(self, dtype=jnp.float32):
        return jnp.zeros((self.hidden_size,), dtype)

    def project_inputs(self, params: IndRNNParams, x):
        return affine(x, params.w_ih, params.b)

    def recurrent_step(self, params: IndRNNParams, state, projected):
        u = params.w_hh
        if self.bound is not None:
            u = jnp.clip(u, -self.bound, self.bound)
        h = NONLINEARITIES[self.nonlinearity](projected + u * state)
        return h, h
