r"""English -> French translation with attention (the PyTorch tutorial's data, held out properly).

  python -m experiments.train --config=experiments/configs/translate.py \
      --config.data.path=../shared/data/eng-fra/fra.txt.gz --workdir=workdirs/translate
  python -m experiments.translate --workdir=workdirs/translate --input=- <<< "I am very tired."
  python -m experiments.translate --workdir=workdirs/translate --heatmap=attention.png

Data: the tutorial's filter of ``fra.txt.gz`` (11,815 distinct pairs, 7,358 English sentences),
split 80/10/10 by English sentence with ``data.split_seed`` (5,886 / 736 / 736 sources); BLEU is
sacrebleu's corpus BLEU with every reference (``tokenize='none'`` on the normalised words) and the
exact-match rate, on the 736 test sources, greedy and beam 5 (``DIR/final_eval.json``: keys
``test_greedy_bleu``, ``test_beam5_bleu``, ...; the translations in ``DIR/test_*.txt``).

Target: train within 10 minutes on the 2-core CPU (``time_budget_s``), beam beats greedy,
attention clearly beats none. Measured: see the README's results table (commands, machine, date).

Presets: ``default`` = ``bahdanau`` (bidirectional GRU encoder, Bahdanau decoder), ``luong``
(Luong's general score with input feeding), ``none`` (no attention: the bridge state only),
``tiny`` (seconds, for tests).
"""

import ml_collections

from experiments.configs._base import base_config

PRESETS = ("default", "bahdanau", "luong", "none", "tiny")


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
    """The config of ``preset`` (the text after ":" in ``--config=...translate.py:NAME``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown translate preset {preset!r}; choose one of {list(PRESETS)}")
    c = base_config("translate")
    c.num_steps = 5000  # about 9 steps/s on the quiet 2-core CPU: the schedule ends in the budget
    c.batch_size = 64
    c.learning_rate = 3e-3
    c.warmup_steps = 200
    c.weight_decay = 0.0
    c.grad_clip_norm = 5.0
    c.log_every = 100
    c.eval_every = 2500
    c.checkpoint_every = 2500
    c.time_budget_s = 570.0  # the 10-minute budget, less compilation and the final evaluation
    c.label_smoothing = 0.1
    c.eval_batch_size = 128
    c.beam_size = 5
    c.length_penalty = 0.6  # GNMT's alpha
    c.show_examples = 3

    c.model.cell = "gru"  # rnn, lstm or gru (encoder layer and decoder cell)
    c.model.hidden_size = 256
    c.model.precision = "float32"  # or bfloat16: the cells' matmuls (tasks/_precision.py)
    c.model.num_layers = 1
    c.model.bidirectional = True
    c.model.embed_size = 256
    c.model.dropout = 0.3
    c.model.attention = "bahdanau"  # none, bahdanau or luong
    c.model.luong_score = "general"  # dot, general or concat (attention='luong')
    c.model.input_feeding = True  # Luong's input feeding
    c.model.bridge = "tanh"  # tanh, linear, copy or zeros
    c.model.backend = "auto"  # the encoder layer's backend (native kernels on CPU)

    c.scheduled_sampling = ml_collections.ConfigDict()
    c.scheduled_sampling.kind = ""  # "" (off), linear, exponential or inverse_sigmoid
    c.scheduled_sampling.k = 1.0
    c.scheduled_sampling.c = 0.0
    c.scheduled_sampling.minimum = 0.0

    c.data.path = ""  # ../shared/data/eng-fra/fra.txt.gz
    c.data.split_seed = 0
    c.data.keep_period = False  # the tutorial's current normalisation drops '.'
    c.data.min_count = 1
    c.data.max_words = 10  # sentences of fewer words (the tutorial's MAX_LENGTH); + EOS

    if preset == "luong":
        c.model.attention = "luong"
    elif preset == "none":
        c.model.attention = "none"
    elif preset == "tiny":
        c.num_steps = 12
        c.batch_size = 8
        c.warmup_steps = 2
        c.log_every = 2
        c.eval_every = 6
        c.checkpoint_every = 6
        c.time_budget_s = 0.0
        c.eval_batch_size = 16
        c.beam_size = 3
        c.show_examples = 2
        c.model.hidden_size = 16
        c.model.embed_size = 8
    return c
