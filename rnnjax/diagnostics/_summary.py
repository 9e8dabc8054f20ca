"""Every diagnostic as a flat dict of scalars, for a training loop's metric writer."""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from rnnjax.diagnostics._dynamics import lyapunov_exponents, spectral_norms, step_jacobians
from rnnjax.diagnostics._gradients import gradient_norms_through_time, run_stack
from rnnjax.diagnostics._saturation import gate_saturation, gated, state_norms
from rnnjax.layers import Recurrent

PROFILE_POINTS = 8  # steps of the gradient profile written as scalars, evenly spaced


def summary(layer: Recurrent, params, x, loss_fn: Callable, points: int = PROFILE_POINTS) -> dict:
    """Gradient norms through time, step-Jacobian norms, Lyapunov exponent, saturation, norms.

    Meant to be jitted once (``jax.jit(lambda p: summary(layer, p, x, loss_fn))``) and called
    every N steps. Names are ``<cell>/<metric>`` with ``<cell>`` ``l{layer}d{direction}``:

    - ``dLdh_t{t}``: ||dL/dh_t|| at ``points`` evenly spaced steps (the last step included),
      and ``dLdh_log10_first_over_last``: the decades lost from the last step to the first;
    - ``jacobian_norm_mean`` and ``jacobian_norm_max``: spectral norms of ``ds_t/ds_{t-1}`` along
      the first example's trajectory; ``lyapunov_max``: the largest Lyapunov exponent there;
    - ``state_norm_mean`` and ``state_norm_last``: ||h_t|| over the batch;
    - ``<gate>_above`` and ``<gate>_below`` (LSTM and GRU): fractions of units beyond 0.99 / 0.01.

    Args:
      layer: an ``rnnjax.Recurrent`` stack, batch first.
      params: its parameters.
      x: ``[B, T, I]`` inputs.
      loss_fn: the scalar loss as a function of the layer's outputs ``[B, T, D*H]``.
      points: how many steps of the gradient profile to report.

    Returns:
      A dict of scalar arrays.
    """
    norms = gradient_norms_through_time(layer, params, x, loss_fn)
    _, inputs = run_stack(layer, params, x)
    num_steps = x.shape[1]
    steps = sorted({round(k * (num_steps - 1) / max(points - 1, 1)) for k in range(points)})
    out = {}
    for index, cell_inputs in enumerate(inputs):
        name = f"l{index // layer.num_directions}d{index % layer.num_directions}"
        for t in steps:
            out[f"{name}/dLdh_t{t}"] = norms[index, t]
        tiny = jnp.finfo(norms.dtype).tiny
        out[f"{name}/dLdh_log10_first_over_last"] = jnp.log10(
            (norms[index, 0] + tiny) / (norms[index, -1] + tiny)
        )
        cell_x = jnp.swapaxes(cell_inputs, 0, 1)
        if index % layer.num_directions:
            cell_x = cell_x[:, ::-1]  # the backward direction's trajectory runs from the end
        jacobians, _ = step_jacobians(layer.cell, params[index], cell_x[0])
        spectral = spectral_norms(jacobians)
        out[f"{name}/jacobian_norm_mean"] = jnp.mean(spectral)
        out[f"{name}/jacobian_norm_max"] = jnp.max(spectral)
        out[f"{name}/lyapunov_max"] = lyapunov_exponents(jacobians, 1)[0]
        norms_t = state_norms(layer.cell, params[index], cell_x)
        out[f"{name}/state_norm_mean"] = jnp.mean(norms_t)
        out[f"{name}/state_norm_last"] = norms_t[-1]
        if gated(layer.cell) is not None:
            for gate, fractions in gate_saturation(layer.cell, params[index], cell_x).items():
                for side, values in fractions.items():
                    out[f"{name}/{gate}_{side}"] = jnp.mean(values)
    return jax.tree.map(jnp.asarray, out)
