r"""The adding problem (Le et al. 2015): sum the two marked values of a length-T sequence.

  python -m experiments.train --config=experiments/configs/adding.py \
      --config.model.cell=lstm --config.data.seq_len=100 --workdir=workdirs/adding_lstm_100

``model.cell`` is ``rnn`` (tanh), ``irnn`` (relu, identity initialisation), ``lstm`` or ``gru``;
``data.seq_len`` is T (100, 200, 400 in the README's table, by ``experiments/memory_sweep.py``).
Predicting the mean gives test MSE 0.167; the LSTM and GRU go below 0.01 at T = 100 and 200 in a
fixed number of steps (the README's table: results, steps/s, machine and date).

Presets: ``default`` (H = 128, 5,000 steps of 32 sequences), ``relu_noclip`` (an IRNN with plain
uniform recurrent weights and no clipping: it diverges, the non-finite guard counts the steps),
``relu_clip`` (the same with gradients clipped at 1), ``tiny`` (seconds, for tests).
"""

import ml_collections

from experiments.configs._memory import memory_config

PRESETS = ("default", "relu_noclip", "relu_clip", "tiny")


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
    """Returns the config of ``preset`` (the text after ':' in ``--config=...py:NAME``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown adding preset {preset!r}; choose one of {list(PRESETS)}")
    c = memory_config("adding", preset)
    if preset in ("relu_noclip", "relu_clip"):
        c.model.cell = "irnn"
        c.model.recurrent_init = "uniform"
        c.learning_rate = 1e-2
        c.num_steps = 300
        c.max_nonfinite_in_a_row = 1000  # count the non-finite steps instead of stopping
        c.grad_clip_norm = 1e30 if preset == "relu_noclip" else 1.0
    return c
