"""What the trainer and ``experiments.predict`` both build: schedule, optimizer, train state.

Kept apart from ``train.py`` because that module defines the trainer's absl flags.
"""

import os

import jax
import optax

from rnnjax import training


def make_schedule(config):
    if config.schedule == "constant":
        return optax.constant_schedule(config.learning_rate)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=config.warmup_steps,
        decay_steps=config.num_steps,
        end_value=config.learning_rate * config.final_lr_fraction,
    )


def make_optimizer(config):
    """AdamW on the schedule, after global-norm clipping; returns ``(optimizer, schedule)``."""
    schedule = make_schedule(config)
    optimizer = training.make_optimizer(
        optax.adamw(schedule, weight_decay=config.weight_decay), config.grad_clip_norm
    )
    return optimizer, schedule


def create_train_state(config, task, model, optimizer):
    init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))
    carry = task.initial_carry(config, model)
    params = jax.jit(model.init)(init_key)  # one compilation instead of many small eager ops
    return training.create_train_state(params, optimizer, train_key, carry)


def restore_model(config, workdir: str, task, data):
    """The model of a trained run and the parameters of its latest checkpoint."""
    model = task.build_model(config, data)
    optimizer, _ = make_optimizer(config)
    checkpointer = training.Checkpointer(os.path.join(workdir, "checkpoints"), 1, create=False)
    if checkpointer.latest_step is None:
        raise training.CheckpointError(f"no checkpoint in {workdir!r}: train a model there first")
    # Restored into the state's shapes (jax.eval_shape), not an initialised state: compiling the
    # initialiser took seconds of every command's start.
    like = jax.eval_shape(lambda: create_train_state(config, task, model, optimizer))
    state = checkpointer.restore_latest(like)
    checkpointer.close()
    return model, state.params
