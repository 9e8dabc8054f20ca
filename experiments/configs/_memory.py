"""Fields the adding and copy configs (``experiments/configs/{adding,copy}.py``) share."""

import ml_collections

from experiments.configs._base import base_config


def memory_config(problem: str, preset: str) -> ml_collections.ConfigDict:
    """The fields the adding and copy configs share."""
    c = base_config("memory")
    c.num_steps = 5000
    c.batch_size = 32
    c.learning_rate = 2e-3
    c.warmup_steps = 50
    c.grad_clip_norm = 1.0
    c.log_every = 50
    c.eval_every = 500
    c.checkpoint_every = 1000
    c.time_budget_s = 600.0  # safety net; the presets are sized in steps
    c.eval_batch_size = 500
    c.diagnostics_batch = 32
    c.model.cell = "lstm"
    c.model.hidden_size = 128
    c.model.precision = "float32"  # or bfloat16: the cells' matmuls (tasks/_precision.py)
    c.model.recurrent_init = ""  # "" for the layer's default ("identity" for irnn)
    c.model.forget_bias = ml_collections.config_dict.placeholder(float)
    c.model.chrono_init = 0  # > 0: chrono initialisation of the LSTM biases with this T_max
    c.data.problem = problem
    c.data.seq_len = 100
    c.data.num_test = 1000
    if preset == "tiny":
        c.num_steps = 6
        c.batch_size = 8
        c.warmup_steps = 1
        c.log_every = 2
        c.eval_every = 4
        c.checkpoint_every = 4
        c.eval_batch_size = 16
        c.diagnostics_batch = 4
        c.model.hidden_size = 8
        c.data.seq_len = 12
        c.data.num_test = 16
    return c
