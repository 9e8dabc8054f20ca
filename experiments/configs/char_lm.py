r"""Character-level language model: embedding, stacked LSTM/GRU/RNN, linear read-out.

Default (Python standard library source, no download; about 1.5 minutes on a 2-core CPU):

  python -m experiments.train --config=experiments/configs/char_lm.py --workdir=workdirs/char_lm

  Measured 2026-11-26 (the README's set-up command from a fresh clone, with ``rnnjax[mkl]``;
  Python 3.11 stdlib, 1.5M chars, 1200 steps, 50 s of training at 24 steps/s, 95 s wall with the
  install): validation loss 1.57 nats/char at step 400, 1.40 at 800, 1.371 (1.98 bits) at the
  end; samples go from noise to Python-looking lines with indentation, comments, `self.` and
  `def`.

Tiny Shakespeare (the acceptance run; get the file from
https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt):

  python -m experiments.train --config=experiments/configs/char_lm.py:shakespeare \
      --config.data.path=../shared/data/tinyshakespeare/input.txt.gz --workdir=workdirs/shakespeare

  Expected: validation loss <= 1.55 nats/char (2.24 bits) on the whole last 10% of the text in
  under 10 minutes of a 2-core CPU. Measured 2026-11-26 on the 2-core Xeon of
  ``benchmarks/RESULTS.md`` with ``rnnjax[mkl]``: 1.470 nats/char (2.121 bits, accuracy 56.4%)
  after 6400 steps (one-layer LSTM of 256 on the native CPU backend, dropout 0.1, truncated BPTT
  over windows of 128, batch 32, Adam 4e-3 with warmup and cosine decay); 470 s of training at
  about 13.8 steps/s, 7 min 55 s wall with compilation and evaluations. ``time_budget_s`` ends
  the run gracefully (save, full evaluation) if the machine is slower.

The same task with a causal Transformer (``model.kind='transformer'``, ``rnnjax.models.
TransformerLM``: 4 pre-LN blocks of width 128, 4 heads, context 128, 826k parameters; random
windows, ``data.tbptt=False``), sized for the same 10-minute budget (2100 steps, batch 32: it
trains at 3.8 steps/s on the quiet 2-core CPU, 2026-12-01, a step costing about 4 LSTM steps).
Compared in ``benchmarks/rnn_vs_transformer.py``:

  python -m experiments.train --config=experiments/configs/char_lm.py:shakespeare_transformer \
      --config.data.path=../shared/data/tinyshakespeare/input.txt.gz \
      --workdir=workdirs/shakespeare_transformer

With the recurrent cell's matmuls in bfloat16 (``--config.model.precision=bfloat16``; state,
sums and parameters float32): on Tiny Shakespeare the validation curve matches float32's within
the noise between seeds (final 1.4714 / 1.4691 against 1.4712 / 1.4661) and trains 1.40x faster
on a Zen 4 EPYC with AVX512-BF16, 2026-12-06 (``experiments/results/char_lm_bf16.md``).

Smoke presets (seconds): `--config=experiments/configs/char_lm.py:tiny` and `:tiny_transformer`.
"""

import ml_collections

from experiments.configs._base import base_config

PRESETS = (
    "default",
    "shakespeare",
    "shakespeare_mingru",
    "shakespeare_lru",
    "shakespeare_regularised",
    "tiny",
    "shakespeare_transformer",
    "tiny_transformer",
)


def get_config(preset: str = "default") -> ml_collections.ConfigDict:
    """Returns the config of ``preset`` (the text after ':' in ``--config=...char_lm.py:NAME``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown char_lm preset {preset!r}; choose one of {list(PRESETS)}")
    c = base_config("char_lm")
    c.num_steps = 1200
    c.seq_len = 100
    c.eval_max_tokens = 50_000  # intermediate evaluations; the final one covers the whole split
    c.eval_batch_size = 32
    c.sample_length = 300
    c.sample_temperature = 0.8

    c.model.kind = "rnn"  # rnn (the recurrent stack below) or transformer (TransformerLM)
    c.model.cell = "lstm"  # rnn, lstm or gru
    c.model.hidden_size = 256
    c.model.num_layers = 1
    c.model.embed_size = 64
    c.model.dropout = 0.0
    c.model.unroll = 1
    # Regularisers of the recurrent stack (rnnjax.Recurrent): variational dropout on the layer's
    # inputs (embeddings), state and outputs, zoneout, DropConnect on w_hh; 0 is off.
    c.model.input_dropout = 0.0
    c.model.recurrent_dropout = 0.0
    c.model.output_dropout = 0.0
    c.model.zoneout = 0.0
    c.model.weight_dropout = 0.0
    c.model.num_heads = 4  # transformer only; hidden_size is its width, seq_len its context
    # bfloat16: the recurrent cells' matmuls in bf16, state and parameters float32 (rnn only).
    c.model.precision = "float32"

    c.data.path = ""  # a text file (plain or .gz); empty: Python's standard library source
    c.data.text = ""  # literal training text, used when path is empty (see hello.py)
    c.data.max_chars = 1_500_000  # cap on the standard-library corpus
    c.data.val_fraction = 0.1  # the last 10% validates; 0 evaluates on the training text
    c.data.tbptt = True  # consecutive windows, state carried across batches (stop_gradient)

    if preset == "shakespeare":
        # Tried on the 2-core CPU with time_budget_s=560, on the scan backend (7.5 steps/s): 4400
        # steps, lr 3e-3, no dropout: 1.504 (cut at 4325); dropout 0.1: 1.495 (cut at 3650), 3600
        # steps: 1.505; unroll=2 (6% faster steps, what the scan runs where the native backend
        # is not built) and lr 4e-3: 4000 steps 1.481. The native backend runs 13.8 steps/s:
        # 6400 steps 1.470.
        c.num_steps = 6400
        c.batch_size = 32
        c.seq_len = 128
        c.learning_rate = 4e-3
        c.warmup_steps = 50
        c.eval_every = 1000
        c.checkpoint_every = 1000
        c.time_budget_s = 560.0
        c.model.hidden_size = 256
        c.model.dropout = 0.1
        c.model.unroll = 2
    elif preset in ("shakespeare_transformer", "tiny_transformer"):
        tiny = preset == "tiny_transformer"
        c = get_config("tiny" if tiny else "shakespeare")
        c.model.kind = "transformer"
        c.model.dropout = 0.0
        c.model.unroll = 1
        c.data.tbptt = False
        if tiny:
            c.sample_length = 24  # past the context of 16: the cache, then windows
            c.model.num_layers, c.model.num_heads, c.model.embed_size = 2, 2, 64
            c.keep_checkpoints = 2  # the base default, as before
        else:
            c.num_steps = 2100  # 3.8 steps/s measured quiet (2026-12-01): 560 s
            c.learning_rate = 2e-3
            c.warmup_steps = 100
            c.eval_every = c.checkpoint_every = 500
            c.model.hidden_size, c.model.num_layers, c.model.num_heads = 128, 4, 4
    elif preset == "shakespeare_regularised":
        # The shakespeare preset with the regularisers that keep the native backend: variational
        # dropout on the embeddings (0.1) and the LSTM's outputs (0.2), DropConnect on w_hh (0.2)
        # instead of per-step dropout 0.1. Measured 2026-12-01 (6400 steps, time_budget_s=0, on
        # the loaded 2-core CPU): 1.510 nats/char on the whole validation split, WORSE than the
        # shakespeare preset's 1.470 (training loss with the masks 1.43 at the end; 1.440 on the
        # first 50k validation chars at step 6000). One regulariser at a time (docs/cell_zoo.md,
        # 2026-12-02) did not beat 1.470 either; kept as the example of the regulariser fields.
        c = get_config("shakespeare")
        c.model.dropout = 0.0
        c.model.input_dropout = 0.1
        c.model.output_dropout = 0.2
        c.model.weight_dropout = 0.2
    elif preset in ("shakespeare_mingru", "shakespeare_lru"):
        # The shakespeare preset's data, schedule and evaluation with two layers of a linear
        # recurrence (trained by the associative scan). shakespeare_mingru measured 2026-12-01
        # (loaded 2-core CPU, time_budget_s=0): 1.6485 nats/char after 6000 steps.
        # shakespeare_lru (GELU read-out) measured 2026-12-02 alone on the 2-core CPU: 1.5492
        # nats/char (accuracy 54.3%) after 1900 steps at 4.1 steps/s, 8 min 14 s wall; without
        # the GELU (a linear stack) 2.18 after the 2000 steps the budget allowed.
        c = get_config("shakespeare")
        c.model.cell = "mingru" if preset == "shakespeare_mingru" else "lru"
        c.model.num_layers = 2
        c.model.unroll = 1
        c.num_steps = 6000 if preset == "shakespeare_mingru" else 1900
    elif preset == "tiny":
        c.num_steps = 12
        c.batch_size = 4
        c.seq_len = 16
        c.warmup_steps = 2
        c.log_every = 2
        c.eval_every = 6
        c.eval_max_tokens = 0
        c.eval_batch_size = 4
        c.checkpoint_every = 4
        c.keep_checkpoints = 3
        c.sample_length = 20
        c.model.hidden_size = 16
        c.model.embed_size = 8
        c.data.max_chars = 20_000
    return c
