"""The Linear Recurrent Unit (Orvieto et al., 2023, "Resurrecting Recurrent Neural Networks").

A complex diagonal recurrence ``x_t = lambda * x_{t-1} + gamma * (B u_t)`` read out as
``y_t = f(Re(C x_t) + u_t D)``, ``f`` the identity or, as after every LRU of the paper's blocks,
GELU (a stack of LRUs without it is one linear filter).
``lambda = exp(-exp(nu_log) + i exp(theta_log))`` stays inside the unit disk for any real
parameters, and its ring initialisation (``r_min <= |lambda| <= r_max``, phase in
``[0, max_phase]``) sets the memory; ``gamma = sqrt(1 - |lambda|^2)`` normalises the input so that
the state's variance does not grow with ``|lambda| -> 1``. All parameters are real arrays (optax
sees no complex numbers); the state is complex.
"""

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._shapes import Array, Float
from rnnjax.cells import _checks
from rnnjax.cells._linear import LinearCell

_ACTIVATIONS = {"identity": lambda y: y, "gelu": jax.nn.gelu}


class LRUParams(NamedTuple):
    """Parameters of ``LRUCell`` (N = ``state_size``), in the ``x @ W`` layout.

    Attributes:
      nu_log: ``[N]``, ``|lambda| = exp(-exp(nu_log))``.
      theta_log: ``[N]``, ``arg lambda = exp(theta_log)``.
      gamma_log: ``[N]``, the input normalisation ``log sqrt(1 - |lambda|^2)`` at init (trained).
      b_re, b_im: ``[I, N]`` input matrix B (real and imaginary parts).
      c_re, c_im: ``[N, H]`` output matrix C.
      d: ``[I, H]`` feed-through; the paper's diagonal D is the case I = H (a dense matrix here,
        so that a layer may change the number of features).
    """

    nu_log: Float[Array, " N"]
    theta_log: Float[Array, " N"]
    gamma_log: Float[Array, " N"]
    b_re: Float[Array, "I N"]
    b_im: Float[Array, "I N"]
    c_re: Float[Array, "N H"]
    c_im: Float[Array, "N H"]
    d: Float[Array, "I H"]


@dataclasses.dataclass(frozen=True)
class LRUCell(LinearCell):
    """LRU for one example; state ``x: [N]`` complex, output ``y: [H]`` real.

    Attributes:
      hidden_size: H, features of the output.
      state_size: N, complex state units (H when None).
      r_min, r_max: the ring of ``|lambda|`` at initialisation, ``0 <= r_min < r_max < 1``.
      max_phase: the largest ``arg lambda`` at initialisation, in ``(0, 2 pi]``.
      activation: of the read-out, ``"identity"`` or ``"gelu"``; it does not touch the state, so
        the recurrence stays linear.

    ``project_inputs`` returns ``[*T, 2N + H]`` real: ``Re(gamma B u)``, ``Im(gamma B u)`` and
    ``u D``, so that one matmul projects a whole sequence.
    """

    hidden_size: int
    state_size: int | None = None
    r_min: float = 0.0
    r_max: float = 1.0 - 1e-3  # the paper's 0.999 written exactly
    max_phase: float = 2 * math.pi
    activation: str = "identity"

    def __post_init__(self):
        _checks.positive_int(self.hidden_size, "hidden_size")
        if self.state_size is not None:
            _checks.positive_int(self.state_size, "state_size")
        if not 0.0 <= self.r_min < self.r_max < 1.0:
            raise ValueError(
                f"r_min, r_max must satisfy 0 <= r_min < r_max < 1, got {self.r_min}, {self.r_max}"
            )
        if not 0.0 < self.max_phase <= 2 * math.pi:
            raise ValueError(f"max_phase must be in (0, 2 pi], got {self.max_phase}")
        _checks.one_of(self.activation, _ACTIVATIONS, "activation")

    @property
    def num_states(self) -> int:
        """N."""
        return self.hidden_size if self.state_size is None else self.state_size

    def init(self, key, input_size: int) -> LRUParams:
        _checks.positive_int(input_size, "input_size")
        n, h = self.num_states, self.hidden_size
        k_u1, k_u2, k_bre, k_bim, k_cre, k_cim, k_d = jax.random.split(key, 7)
        u1 = jax.random.uniform(k_u1, (n,))
        u2 = jax.random.uniform(k_u2, (n,))
        # |lambda|^2 uniform on the ring [r_min^2, r_max^2]: uniform density in the annulus.
        nu_log = jnp.log(-0.5 * jnp.log(u1 * (self.r_max**2 - self.r_min**2) + self.r_min**2))
        theta_log = jnp.log(self.max_phase * u2)
        gamma_log = jnp.log(jnp.sqrt(1.0 - jnp.exp(-2.0 * jnp.exp(nu_log))))
        b_scale = 1.0 / math.sqrt(2 * input_size)
        c_scale = 1.0 / math.sqrt(n)
        return LRUParams(
            nu_log=nu_log,
            theta_log=theta_log,
            gamma_log=gamma_log,
            b_re=jax.random.normal(k_bre, (input_size, n)) * b_scale,
            b_im=jax.random.normal(k_bim, (input_size, n)) * b_scale,
            c_re=jax.random.normal(k_cre, (n, h)) * c_scale,
            c_im=jax.random.normal(k_cim, (n, h)) * c_scale,
            d=jax.random.normal(k_d, (input_size, h)) / math.sqrt(input_size),
        )

    def initial_state(self, dtype=jnp.float32):
        return jnp.zeros((self.num_states,), _complex(dtype))

    def project_inputs(self, params: LRUParams, x):
        gamma = jnp.exp(params.gamma_log)[None, :]
        w = jnp.concatenate([params.b_re * gamma, params.b_im * gamma, params.d], axis=1)
        return x @ w

    def eigenvalues(self, params: LRUParams):
        """``lambda: [N]`` complex."""
        return jnp.exp(-jnp.exp(params.nu_log) + 1j * jnp.exp(params.theta_log))

    def linear_coefficients(self, params, projected):
        n = self.num_states
        b = jax.lax.complex(projected[..., :n], projected[..., n : 2 * n])
        a = jnp.broadcast_to(self.eigenvalues(params).astype(b.dtype), b.shape)
        return a, b

    def linear_output(self, params, state, projected):
        n = self.num_states
        linear = state.real @ params.c_re - state.imag @ params.c_im + projected[..., 2 * n :]
        return _ACTIVATIONS[self.activation](linear)


def _complex(dtype):
    """complex64 for float32 (and narrower), complex128 for float64."""
    return jnp.result_type(dtype, jnp.complex64)
