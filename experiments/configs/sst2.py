r"""SST-2 sentiment: a word-level bidirectional LSTM trained from scratch (no pretrained vectors).

  python -m experiments.train --config=experiments/configs/sst2.py \
      --config.data.dir=../shared/data/sst2 --workdir=workdirs/sst2
  python -m experiments.predict --workdir=workdirs/sst2 \
      --input=../shared/data/sst2/dev.tsv --output=workdirs/sst2/dev_predictions.tsv

Trains on the 67,349 phrase-level rows of ``train.tsv.gz``, evaluates on the 872 sentences of
``dev.tsv``. Target: at least 85.2 % dev accuracy within 10 minutes of training on the 2-core
CPU. Measured: see the README's results table (the command above, machine and date there). In
bfloat16 (``--config.model.precision=bfloat16 --config.num_steps=8500``) the target is met on a
Zen 4 EPYC with AVX512-BF16: 85.32 % in the budget (2026-12-06, README).

Presets: ``default`` (the BiLSTM of the target), ``unidirectional`` (the same LSTM, one
direction), ``tiny`` (seconds, for tests). ``experiments.compare`` runs the cell comparison.
"""

import ml_collections

from experiments.configs._base import base_config

PRESETS = ("default", "unidirectional", "tiny")


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
    """Returns the config of ``preset`` (the text after ':' in ``--config=...sst2.py:NAME``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown sst2 preset {preset!r}; choose one of {list(PRESETS)}")
    c = base_config("classify")
    c.num_steps = 5000
    c.batch_size = 64
    c.learning_rate = 1e-3
    c.warmup_steps = 100
    c.weight_decay = 0.0
    c.grad_clip_norm = 5.0
    c.log_every = 100
    c.eval_every = 1000
    c.checkpoint_every = 1000
    c.time_budget_s = 570.0  # the 10-minute budget of the target, less compilation
    c.eval_batch_size = 128
    c.show_examples = 3

    c.model.cell = "lstm"  # rnn, lstm or gru
    c.model.bidirectional = True
    c.model.hidden_size = 256
    c.model.precision = "float32"  # or bfloat16: the cells' matmuls (tasks/_precision.py)
    c.model.num_layers = 1
    c.model.embed_size = 300
    c.model.pooling = "attention"  # last, mean, max or attention
    c.model.head_sizes = ()
    c.model.dropout = 0.5
    c.model.word_dropout = 0.1  # probability of replacing a token by <unk> in training

    c.data.dir = ""  # a folder with train_file and valid_file (../shared/data/sst2)
    c.data.train_file = "train.tsv.gz"
    c.data.valid_file = "dev.tsv"
    c.data.train_path = ""  # explicit files instead of dir
    c.data.valid_path = ""
    c.data.min_count = 3  # rarer words become <unk>: less to memorise
    c.data.max_vocab = 0  # 0: every word of the training file
    c.data.buckets = (8, 16, 24, 32, 48, 64)

    if preset == "unidirectional":
        c.model.bidirectional = False
    elif preset == "tiny":
        c.num_steps = 12
        c.batch_size = 8
        c.warmup_steps = 2
        c.log_every = 2
        c.eval_every = 6
        c.checkpoint_every = 4
        c.keep_checkpoints = 3
        c.time_budget_s = 0.0
        c.eval_batch_size = 8
        c.model.hidden_size = 16
        c.model.embed_size = 8
        c.data.buckets = (4, 8, 16)
    return c
