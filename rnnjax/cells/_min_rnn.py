"""minGRU and minLSTM (Feng et al., 2024, "Were RNNs All We Needed?"): gates from the input only.

Both cells drop the state from their gates, so the recurrence is linear in the state and a
sequence runs as a parallel scan (``rnnjax.cells.LinearCell``) over the coefficient pairs, which
stays accurate in float32 without the paper's log-space scan (``backends._associative``). minLSTM's
normalised gates ``f / (f + i)`` are computed in log space, as the paper recommends (no 0 / 0
when both gates underflow); minGRU's ``sigmoid`` gates need no logs. ``g(x) = x + 1/2 (x >= 0),
sigmoid(x) (x < 0)`` keeps the candidate state positive.
"""

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._shapes import Array, Float
from rnnjax.cells import _checks, _initializers
from rnnjax.cells._base import affine
from rnnjax.cells._linear import LinearCell


class MinRNNParams(NamedTuple):
    """Parameters of ``MinGRUCell`` (G = 2: z, h~) and ``MinLSTMCell`` (G = 3: f, i, h~).

    Attributes:
      w_ih: ``[I, G*H]`` input weights.
      b_ih: ``[G*H]`` bias, or None when ``bias=False``.
    """

    w_ih: Float[Array, "I GH"]
    b_ih: Float[Array, " GH"] | None = None


def log_g(x):
    """``log g(x)``, with the paper's ``g(x) = x + 1/2`` for x >= 0 and ``sigmoid(x)`` below."""
    # Both branches are evaluated: clip so the unused one is finite (its gradient is then 0).
    return jnp.where(x >= 0, jnp.log(jnp.maximum(x, 0.0) + 0.5), -jax.nn.softplus(-x))


def _init(key, input_size, hidden_size, num_gates, bias, input_init, dtype=jnp.float32):
    input_fn = _initializers.resolve(input_init, hidden_size, "input_init")
    k_w, k_b = jax.random.split(key)
    w = _initializers.gate_blocks(input_fn, k_w, input_size, hidden_size, num_gates, dtype)
    if not bias:
        return MinRNNParams(w)
    b = _initializers.torch_uniform(hidden_size)(k_b, (num_gates * hidden_size,), dtype)
    return MinRNNParams(w, b)


@dataclasses.dataclass(frozen=True)
class _MinRNNCell(LinearCell):
    """What minGRU and minLSTM share: ``num_gates`` input-only gate blocks; the state is the
    output."""

    hidden_size: int
    bias: bool = True
    input_init: object = "uniform"
    num_gates: ClassVar[int]

    def __post_init__(self):
        _checks.positive_int(self.hidden_size, "hidden_size")

    def init(self, key, input_size: int) -> MinRNNParams:
        return _init(key, input_size, self.hidden_size, self.num_gates, self.bias, self.input_init)

    def initial_state(self, dtype=jnp.float32):
        return jnp.zeros((self.hidden_size,), dtype)

    def project_inputs(self, params: MinRNNParams, x):
        return affine(x, params.w_ih, params.b_ih)

    def linear_output(self, params, state, projected):
        return state


@dataclasses.dataclass(frozen=True)
class MinGRUCell(_MinRNNCell):
    """minGRU for one example::

        z = sigmoid(x W_z + b_z),  h~ = g(x W_h + b_h),  h' = (1 - z) * h + z * h~

    Attributes:
      hidden_size: H.
      bias: whether the cell has ``b_ih``.
      input_init: initialiser of ``w_ih`` (``"uniform"``, ``"glorot_uniform"`` or a callable).

    State and output are both ``h: [H]``. The paper starts from ``h_0 = g(.)`` > 0 so that its
    log-space scan applies; here any state works (the scan is over the pairs ``(a, b)``).
    """

    num_gates = 2

    def linear_coefficients(self, params, projected):
        k, pre_h = jnp.split(projected, 2, axis=-1)
        # sigmoid is exact in float32 over the whole range and the scan runs on (a, b), not on
        # logs: the log-space form (minLSTM below) would only add transcendentals here.
        z = jax.nn.sigmoid(k)
        return jax.nn.sigmoid(-k), z * jnp.where(pre_h >= 0, pre_h + 0.5, jax.nn.sigmoid(pre_h))


@dataclasses.dataclass(frozen=True)
class MinLSTMCell(_MinRNNCell):
    """minLSTM for one example, with the paper's normalised (length-independent) gates::

        f = sigmoid(x W_f + b_f),  i = sigmoid(x W_i + b_i),  h~ = g(x W_h + b_h)
        h' = f / (f + i) * h + i / (f + i) * h~

    Attributes:
      hidden_size: H.
      bias: whether the cell has ``b_ih``.
      input_init: initialiser of ``w_ih``.

    State and output are both ``h: [H]`` (there is no separate cell state).
    """

    num_gates = 3

    def linear_coefficients(self, params, projected):
        k_f, k_i, pre_h = jnp.split(projected, 3, axis=-1)
        # log f' = log f - log(f + i) = -softplus(d), log i' = -softplus(-d), with
        # d = log i - log f = softplus(-k_f) - softplus(-k_i): no division, no overflow.
        d = jax.nn.softplus(-k_f) - jax.nn.softplus(-k_i)
        return jnp.exp(-jax.nn.softplus(d)), jnp.exp(-jax.nn.softplus(-d) + log_g(pre_h))
