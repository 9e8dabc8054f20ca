"""The jitted train step: gradient, clipping, skip of non-finite updates, metrics."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from rnnjax.training._state import TrainState


class NonFiniteError(FloatingPointError):
    """Too many consecutive non-finite losses or gradients; the message says at which step."""


def make_optimizer(
    optimizer: optax.GradientTransformation, max_norm: float
) -> optax.GradientTransformation:
    """``optax.chain(optax.clip_by_global_norm(max_norm), optimizer)``.

    Args:
      optimizer: the update rule, with its learning-rate schedule (e.g. ``optax.adamw(schedule)``).
      max_norm: gradients whose global norm exceeds it are scaled down to it.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm!r}")
    return optax.chain(optax.clip_by_global_norm(max_norm), optimizer)


def make_train_step(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    *,
    max_norm: float,
    learning_rate_fn: Callable | None = None,
    donate: bool = True,
):
    """Builds ``train_step(state, batch) -> (state, metrics)``, jitted with the state donated.

    A step whose loss or gradient is not finite leaves the parameters, optimizer state and carry
    untouched (the carry is zeroed), advances ``step`` and counts itself in the state's
    ``nonfinite_*`` counters; ``check_finite`` turns long runs of them into an error.

    Args:
      loss_fn: ``loss_fn(params, carry, batch, key) -> (loss, (carry, aux))``; ``key`` is
        ``fold_in(state.rng, state.step)`` (for dropout), ``aux`` a dict of scalar metrics. The
        returned carry goes through ``stop_gradient`` (truncated BPTT).
      optimizer: the full transformation, whose first element clips at ``max_norm``
        (``make_optimizer``).
      max_norm: the clipping threshold, to report whether a step was clipped.
      learning_rate_fn: schedule of the step, to report the learning rate; omitted when None.
      donate: donate the input state's buffers (it must not be used after the call).

    Returns:
      The jitted step. ``metrics`` holds ``loss``, ``grad_norm`` (global norm before clipping),
      ``clipped`` (1.0 when clipped), ``nonfinite`` (1.0 when skipped), ``learning_rate`` and
      ``aux``'s entries, all scalars.
    """

    def train_step(state: TrainState, batch):
        key = jax.random.fold_in(state.rng, state.step)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (carry, aux)), grads = grad_fn(state.params, state.carry, batch, key)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)

        def select(new, old):
            return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)

        carry = jax.tree.map(
            lambda c: jnp.where(finite, jax.lax.stop_gradient(c), jnp.zeros_like(c)), carry
        )
        in_a_row = jnp.where(finite, 0, state.nonfinite_in_a_row + 1)
        new_state = state.replace(
            step=state.step + 1,
            params=select(params, state.params),
            opt_state=select(opt_state, state.opt_state),
            carry=carry,
            nonfinite_in_a_row=in_a_row,
            nonfinite_total=state.nonfinite_total + (~finite).astype(jnp.int32),
            nonfinite_worst=jnp.maximum(state.nonfinite_worst, in_a_row),
        )
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "clipped": (grad_norm > max_norm).astype(jnp.float32),
            "nonfinite": (~finite).astype(jnp.float32),
            **aux,
        }
        if learning_rate_fn is not None:
            metrics["learning_rate"] = jnp.asarray(learning_rate_fn(state.step), jnp.float32)
        return new_state, metrics

    return jax.jit(train_step, donate_argnums=(0,) if donate else ())


def check_finite(state: TrainState, max_in_a_row: int) -> None:
    """Raises ``NonFiniteError`` once ``max_in_a_row`` consecutive steps have been skipped.

    Reads the ``nonfinite_worst`` counter, so calling it every few steps misses no run.
    """
    worst = int(state.nonfinite_worst)
    if worst >= max_in_a_row:
        raise NonFiniteError(
            f"{worst} consecutive train steps had a non-finite loss or gradient (by step "
            f"{int(state.step)}; {int(state.nonfinite_total)} in total), limit {max_in_a_row}: "
            "stopping instead of training a NaN model. Lower the learning rate or grad_clip_norm."
        )
