"""The train state: everything a run needs to continue, as one pytree that checkpoints whole."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    """State of a training run; every leaf is an array, so it is donated, jitted and saved whole.

    Attributes:
      step: int32 scalar, the number of train steps taken (skipped ones included).
      params: model parameters.
      opt_state: the optimizer's state.
      rng: base PRNG key of the run; step k uses ``fold_in(rng, k)``, so randomness depends on
        (seed, step) only and not on restarts.
      carry: model state carried between batches (truncated BPTT), or ``()``.
      nonfinite_in_a_row: int32, consecutive steps skipped for a non-finite loss or gradient.
      nonfinite_total: int32, all skipped steps.
      nonfinite_worst: int32, the longest run of consecutive skipped steps so far.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    carry: Any = ()
    nonfinite_in_a_row: jax.Array = flax.struct.field(default_factory=lambda: jnp.int32(0))
    nonfinite_total: jax.Array = flax.struct.field(default_factory=lambda: jnp.int32(0))
    nonfinite_worst: jax.Array = flax.struct.field(default_factory=lambda: jnp.int32(0))


def create_train_state(params, optimizer: optax.GradientTransformation, rng: jax.Array, carry=()):
    """Returns the state at step 0.

    Args:
      params: initial parameters.
      optimizer: the full transformation, e.g. from ``make_optimizer``.
      rng: the run's base key; a raw ``jax.random.PRNGKey`` (uint32) checkpoints as a plain array.
      carry: initial carried model state for truncated BPTT, or ``()``.
    """
    return TrainState(
        step=jnp.int32(0),
        params=params,
        opt_state=optimizer.init(params),
        rng=rng,
        carry=carry,
    )
