r"""Sequential digits: MNIST (28x28) or the 8x8 digits read as sequences by a recurrent classifier.

  python -m experiments.train --config=experiments/configs/sequential_mnist.py:rows \
      --workdir=workdirs/smnist_rows

Data: MNIST's official 10k *test* images only (``../shared/data/mnist-test``; the 60k training
file is not on this machine), split into a fixed 8,000 train / 2,000 held-out part (every 5th
image held out, ``rnnjax.data.holdout_split``); the 1,797 8x8 digits
(``../shared/data/digits/digits.csv.gz``) split the same way, 1,438 / 359. Pixels in [0, 1].
The numbers are accuracies on the held-out part, not on MNIST's test set: the published anchors
(full 60k training set) are not directly comparable.

Presets (each a fixed number of steps sized for 10 minutes of the quiet 2-core CPU; the results,
steps/s and dates are in the README's "Sequential digits" table):
- ``rows``: 28 steps of 28 pixels, 2-layer LSTM 128, random shifts of up to 2 pixels.
  Target: at least 98 % held-out accuracy in 10 minutes.
- ``pixels``: 784 steps of 1 pixel, 1-layer LSTM 128 read out by the mean of its outputs (the
  anchors' last-state read-out did not leave the chance plateau within the budget).
- ``permuted``: ``pixels`` with the 784 steps in a fixed random order (``data.permutation_seed``).
- ``digits_pixels``: the 8x8 digits, 64 steps of 1 pixel. Target: at least 97 %.
- ``digits_rows``: the 8x8 digits, 8 steps of 8 pixels.
- ``tiny``: seconds, for tests (digits rows, a few steps).
"""

import ml_collections

from experiments.configs._base import base_config

PRESETS = ("rows", "pixels", "permuted", "digits_pixels", "digits_rows", "tiny")


def get_config(preset: str = "rows") -> ml_collections.ConfigDict:
    """Returns the config of ``preset`` (the text after ':' in ``--config=...:NAME``)."""
    if preset not in PRESETS:
        raise ValueError(
            f"unknown sequential_mnist preset {preset!r}; choose one of {list(PRESETS)}"
        )
    c = base_config("sequential_images")
    c.num_steps = 3000
    c.batch_size = 128
    c.learning_rate = 2e-3
    c.warmup_steps = 100
    c.weight_decay = 0.0
    c.grad_clip_norm = 1.0
    c.log_every = 50
    c.eval_every = 500
    c.checkpoint_every = 500
    c.time_budget_s = 570.0  # safety net for the 10-minute budget, less compilation
    c.eval_batch_size = 500
    c.show_examples = 4

    c.model.cell = "lstm"  # rnn, lstm or gru
    c.model.hidden_size = 128
    c.model.precision = "float32"  # or bfloat16: the cells' matmuls (tasks/_precision.py)
    c.model.num_layers = 2
    c.model.bidirectional = False
    c.model.layer_dropout = 0.1  # between recurrent layers
    c.model.dropout = 0.0  # on the inputs, the pooled state and the head's hidden layers
    c.model.pooling = "last"  # last, mean, max or attention
    c.model.forget_bias = ml_collections.FieldReference(None, field_type=float)  # LSTM only
    c.model.recurrent_init = "uniform"  # or "orthogonal"
    c.model.head_sizes = ()

    c.data.source = "mnist"  # or "digits"
    c.data.mnist_dir = "../shared/data/mnist-test"
    c.data.mnist_images = "t10k-images-idx3-ubyte.gz"
    c.data.mnist_labels = "t10k-labels-idx1-ubyte.gz"
    c.data.digits_path = "../shared/data/digits/digits.csv.gz"
    c.data.order = "rows"  # or "pixels"
    c.data.permute = False  # the steps in a fixed random order
    c.data.permutation_seed = 0  # fixed: the permuted task is the same for every run
    c.data.holdout_every = 5  # image i held out when i % 5 == 4
    c.data.max_shift = 2  # training images shifted by up to this many pixels (0: none)
    c.data.train_limit = 0  # 0: every training image
    c.data.held_out_limit = 0  # 0: every held-out image

    if preset in ("pixels", "permuted"):
        c.num_steps = 700
        c.batch_size = 64
        c.learning_rate = 2e-3
        c.warmup_steps = 50
        c.eval_every = 350
        c.checkpoint_every = 350
        c.log_every = 25
        c.model.num_layers = 1
        c.model.forget_bias = 1.0  # 784 steps: the memory starts open
        # The mean of the outputs gives every step a short gradient path: with the last state
        # alone the LSTM was still at chance (loss 2.299) after 350 of the 700 steps.
        c.model.pooling = "mean"
        c.data.order = "pixels"
        c.data.max_shift = 0
        c.data.permute = preset == "permuted"
    elif preset in ("digits_pixels", "digits_rows"):
        c.num_steps = 3000
        c.batch_size = 64
        c.learning_rate = 3e-3
        c.eval_every = 500
        c.model.num_layers = 1
        c.data.source = "digits"
        c.data.order = "pixels" if preset == "digits_pixels" else "rows"
        c.data.max_shift = 1  # without shifts: 96.9 % at 2,000 steps (overfits 1,438 images)
    elif preset == "tiny":
        c.num_steps = 12
        c.batch_size = 16
        c.warmup_steps = 2
        c.log_every = 4
        c.eval_every = 6
        c.checkpoint_every = 6
        c.time_budget_s = 0.0
        c.eval_batch_size = 32
        c.show_examples = 2
        c.model.hidden_size = 16
        c.model.num_layers = 1
        c.data.source = "digits"
        c.data.max_shift = 1
        c.data.held_out_limit = 64
    return c
