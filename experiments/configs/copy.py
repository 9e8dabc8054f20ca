r"""The copy task: recall 10 symbols (of 8) after T blanks and a delimiter, T + 20 steps in all.

  python -m experiments.train --config=experiments/configs/copy.py \
      --config.model.cell=lstm --config.data.seq_len=100 --workdir=workdirs/copy_lstm_100

``model.cell`` is ``rnn`` (tanh), ``irnn`` (relu, identity initialisation), ``lstm`` or ``gru``;
``data.seq_len`` is T (50 and 100 in the README's table, made by ``experiments/memory_sweep.py``).
Forgetting the symbols gives a test loss (cross-entropy per step) of 10 ln 8 / (T + 20): 0.173 at
T = 100, 0.297 at T = 50; ``recall_accuracy`` is the fraction of the 10 symbols recalled.

Presets: ``default`` (H = 128, 5,000 steps of 32 sequences), ``tiny`` (seconds, for tests).
"""

import ml_collections

from experiments.configs._memory import memory_config

PRESETS = ("default", "tiny")


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
    """Returns the config of ``preset`` (the text after ':' in ``--config=...py:NAME``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown copy preset {preset!r}; choose one of {list(PRESETS)}")
    c = memory_config("copy", preset)
    if preset == "tiny":
        c.data.seq_len = 5
    return c
