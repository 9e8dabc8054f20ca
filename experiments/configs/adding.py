r"""The adding problem (Le et al. 2015): sum the two marked values of a length-T sequence.

  python -m experiments.train --config=experiments/configs/adding.py \
      --config.model.cell=lstm --config.data.seq_len=100 --workdir=workdirs/adding_lstm_100

``model.cell`` is ``rnn`` (tanh), ``irnn`` (relu, identity initialisation), ``lstm`` or ``gru``;
``data.seq_len`` is T (100, 200, 400 in the README's table, by ``experiments/memory_sweep.py``).
Predicting the mean gives test MSE 0.167. Measured (default preset, 1 Dec 2026): LSTM 0.0007 and
GRU 0.0002 at T = 100, tanh RNN 0.170; at T = 200 GRU 0.0003 but LSTM 0.174 (default init); the
README's table has every run with its time.

Presets: ``default`` (H = 128, 5,000 steps of 32 sequences), ``tiny`` (seconds, for tests).
Clipping against exploding gradients (a relu RNN under plain SGD) is shown by
``experiments/memory_plots.py``: the trainer's AdamW bounds each update, so it rarely diverges.
"""

import ml_collections

from experiments.configs._memory import memory_config

PRESETS = ("default", "tiny")


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
    """Returns the config of ``preset`` (the text after ':' in ``--config=...py:NAME``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown adding preset {preset!r}; choose one of {list(PRESETS)}")
    return memory_config("adding", preset)
