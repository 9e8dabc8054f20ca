"""Diagnostics of recurrent dynamics: pure functions, usable from any training loop.

- ``gradient_norms_through_time``: ||dL/dh_t|| for every step and layer, from one VJP;
- ``step_jacobians``, ``spectral_norms``, ``lyapunov_exponents``: the step ``ds_t/ds_{t-1}``
  along a trajectory and what it does to gradients;
- ``gate_saturation`` (LSTM, GRU) and ``state_norms`` over time;
- ``summary``: all of them as a flat dict of scalars (what ``experiments.train`` logs every
  ``config.diagnostics_every`` steps).

Example::

    layer = rnnjax.LSTM(64)
    params = layer.init(key, input_size=2)
    loss = lambda out: jnp.mean((out[:, -1] @ w - y) ** 2)       # out: [B, T, H]
    norms = rnnjax.diagnostics.gradient_norms_through_time(layer, params, x, loss)  # [L*D, T]
    jacobians, _ = rnnjax.diagnostics.step_jacobians(layer.cell, params[0], x[0])  # [T, S, S]
    rnnjax.diagnostics.lyapunov_exponents(jacobians, num=1)       # < 0: memories decay
"""

from rnnjax.diagnostics._dynamics import lyapunov_exponents, spectral_norms, step_jacobians
from rnnjax.diagnostics._gradients import gradient_norms_through_time, hidden_of, run_stack
from rnnjax.diagnostics._saturation import gate_saturation, state_norms
from rnnjax.diagnostics._summary import summary

__all__ = [
    "gate_saturation",
    "gradient_norms_through_time",
    "hidden_of",
    "lyapunov_exponents",
    "run_stack",
    "spectral_norms",
    "state_norms",
    "step_jacobians",
    "summary",
]
