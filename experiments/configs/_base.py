"""Fields every config has: the trainer reads them, whatever the task.

A task's config starts from ``base_config()`` and adds ``model.*``, ``data.*`` and its own fields.
"""

import ml_collections


def base_config(task: str) -> ml_collections.ConfigDict:
    """The shared defaults, with ``task`` naming a module of ``experiments/tasks``."""
    c = ml_collections.ConfigDict()
    c.task = task
    c.seed = 0
    c.num_steps = 1000
    c.batch_size = 32
    c.learning_rate = 3e-3
    c.warmup_steps = 50
    c.final_lr_fraction = 0.05  # cosine decay from learning_rate to this fraction of it
    c.schedule = "cosine"  # or "constant"
    c.weight_decay = 0.0
    c.grad_clip_norm = 1.0
    c.log_every = 25
    c.eval_every = 400
    c.checkpoint_every = 400
    c.keep_checkpoints = 2
    c.max_nonfinite_in_a_row = 20
    c.time_budget_s = 0.0  # stop gracefully (final save and evaluation) after this; 0 for none
    c.diagnostics_every = 0  # log rnnjax.diagnostics.summary every N steps (task hook); 0: off
    c.model = ml_collections.ConfigDict()
    c.data = ml_collections.ConfigDict()
    return c
