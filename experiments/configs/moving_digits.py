r"""Moving digits: a CNN per frame, an rnnjax Flax LSTM over the frames, digit and direction heads.

  python -m experiments.train --config=experiments/configs/moving_digits.py \
      --workdir=workdirs/moving_digits
  python -m experiments.train --config=experiments/configs/moving_digits.py:shuffled \
      --workdir=workdirs/moving_digits_shuffled
  python -m experiments.train --config=experiments/configs/moving_digits.py:cnn_mean \
      --workdir=workdirs/moving_digits_cnn_mean

Each sequence is an MNIST digit (``../shared/data/mnist-test``: the first 8,000 train, the last
2,000 validate on fixed trajectories) crossing a 36 x 36 canvas in one of 8 directions at 1-2
pixels per frame over 12 frames. The frames' order alone tells the direction's sign (start
positions are drawn so that a path and its reversal are equally likely), so the ``shuffled``
(frames in random order) and ``cnn_mean`` (mean of the frame features, no LSTM) ablations can
find the digit and the axis of motion but should stay near 50 % on the direction. Expected:
see the README's table (the commands above, each under 10 minutes on the 2-core CPU).

Presets: ``default``, ``shuffled``, ``cnn_mean``, ``tiny`` (seconds, for tests).
"""

import ml_collections

from experiments.configs._base import base_config

PRESETS = ("default", "shuffled", "cnn_mean", "tiny")


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
    """Returns the config of ``preset`` (the text after ':' in ``--config=...py:NAME``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown moving_digits preset {preset!r}; choose one of {list(PRESETS)}")
    c = base_config("frames")
    c.num_steps = 2000
    c.batch_size = 64
    c.learning_rate = 6e-3
    c.warmup_steps = 50
    c.weight_decay = 1e-4
    c.grad_clip_norm = 1.0
    c.log_every = 50
    c.eval_every = 500
    c.checkpoint_every = 500
    c.time_budget_s = 540.0
    c.eval_batch_size = 250
    c.eval_examples = 500  # at intermediate evaluations; the final one uses all 2,000
    c.show_examples = 4

    c.model.temporal = "lstm"  # or "mean": the CNN-only baseline
    c.model.conv_features = (16, 32)
    c.model.frame_features = 64
    c.model.hidden_size = 64
    c.model.num_layers = 1
    c.model.dropout = 0.1

    c.data.dir = "../shared/data/mnist-test"
    c.data.num_valid = 2000
    c.data.digit_size = 14  # 28 x 28 digits averaged over 2 x 2 blocks
    c.data.canvas = 36
    c.data.num_frames = 12
    c.data.max_speed = 2
    c.data.num_directions = 8
    c.data.shuffle_frames = False

    if preset == "shuffled":
        c.data.shuffle_frames = True
    elif preset == "cnn_mean":
        c.model.temporal = "mean"
    elif preset == "tiny":
        c.num_steps = 6
        c.batch_size = 8
        c.warmup_steps = 1
        c.log_every = 2
        c.eval_every = 4
        c.checkpoint_every = 4
        c.eval_batch_size = 16
        c.eval_examples = 16
        c.model.conv_features = (4,)
        c.model.frame_features = 8
        c.model.hidden_size = 8
        c.data.num_valid = 32
        c.data.digit_size = 7
        c.data.canvas = 14
        c.data.num_frames = 4
    return c
