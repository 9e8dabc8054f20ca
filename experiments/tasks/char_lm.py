"""The character-LM task: corpus from the config, batches, loss, evaluation and samples.

Config: ``experiments/configs/char_lm.py`` (and ``hello.py``).
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import config_cli
from experiments.tasks import _precision
from experiments.tasks._files import write_atomically
from rnnjax import data, training
from rnnjax.models import CharLM, TransformerLM

_CELLS = ("rnn", "lstm", "gru", "mingru", "minlstm", "lru")
# Options of the recurrent stack (rnnjax.Recurrent), each a rate in [0, 1).
_REGULARISERS = (
    "input_dropout",
    "recurrent_dropout",
    "output_dropout",
    "zoneout",
    "weight_dropout",
)
_KINDS = ("rnn", "transformer")  # model.kind: a recurrent stack or a causal Transformer


def validate(config) -> None:
    """Raises ``ConfigError`` for char-LM fields that cannot run."""
    config_cli.check_positive_ints(
        config,
        "seq_len",
        "eval_batch_size",
        "sample_length",
        "model.hidden_size",
        "model.num_layers",
        "model.embed_size",
        "model.unroll",
    )
    config_cli.check_choice(config, "model.cell", _CELLS)
    config_cli.check_choice(config, "model.kind", _KINDS)
    _precision.validate(config)
    if config.model.kind == "transformer":
        _validate_transformer(config)
    if config.model.precision == "bfloat16" and (
        config.model.kind != "rnn" or config.model.cell not in ("rnn", "lstm", "gru")
    ):
        raise config_cli.ConfigError(
            "config.model.precision='bfloat16' needs model.kind='rnn' and model.cell in ('rnn', "
            f"'lstm', 'gru'), got kind={config.model.kind!r}, cell={config.model.cell!r}"
        )
    config_cli.check_range(config, "model.dropout", 0.0, 1.0)
    for name in _REGULARISERS:
        config_cli.check_range(config, f"model.{name}", 0.0, 1.0)
    config_cli.check_range(config, "data.val_fraction", 0.0, 1.0)
    config_cli.check_positive(config, "sample_temperature")


def _validate_transformer(config) -> None:
    """The Transformer reads random windows (no carried state) and splits the width into heads."""
    config_cli.check_positive_ints(config, "model.num_heads")
    if config.data.tbptt:
        raise config_cli.ConfigError(
            "config.data.tbptt must be False with model.kind='transformer' (it carries no state "
            "between windows), got True"
        )
    if config.model.hidden_size % config.model.num_heads:
        raise config_cli.ConfigError(
            f"config.model.hidden_size must be a multiple of model.num_heads="
            f"{config.model.num_heads} with model.kind='transformer', "
            f"got {config.model.hidden_size}"
        )


def load_data(config, workdir: str) -> data.CharCorpus:
    """Reads the configured text; the vocabulary is saved in the workdir and reused on resume."""
    if config.data.path:
        text = data.read_text(config.data.path)
    elif config.data.text:
        text = config.data.text
    else:
        text = data.stdlib_text(config.data.max_chars)
    vocab_file = os.path.join(workdir, "vocab.json")
    vocab = _read_vocab(vocab_file) if os.path.exists(vocab_file) else None
    corpus = data.load_corpus(
        text, config.data.val_fraction, min_chars=config.seq_len + 1, vocab=vocab
    )
    needed = config.batch_size * config.seq_len + config.seq_len + 1
    if config.data.tbptt and len(corpus.train) < needed:
        raise data.CorpusError(
            f"the training split has {len(corpus.train)} characters, fewer than the {needed} that "
            f"{config.batch_size} streams of windows of {config.seq_len} need with data.tbptt; "
            "lower batch_size or seq_len, or set --config.data.tbptt=false"
        )
    if vocab is None:
        write_atomically(vocab_file, json.dumps({"vocab": corpus.vocab}))
    return corpus


def _read_vocab(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return json.load(f)["vocab"]


def describe(corpus: data.CharCorpus) -> str:
    return (
        f"{len(corpus.train)} train / {len(corpus.valid)} validation chars, "
        f"vocabulary {corpus.vocab_size}"
    )


def tokens_per_step(config) -> int:
    return config.batch_size * config.seq_len


def build_model(config, corpus: data.CharCorpus) -> CharLM | TransformerLM:
    """The recurrent ``CharLM``, or with ``model.kind='transformer'`` a ``TransformerLM`` of
    width ``hidden_size`` and context ``seq_len`` (``embed_size``, ``cell``, ``unroll`` unused)."""
    m = config.model
    if m.kind == "transformer":
        return TransformerLM(
            corpus.vocab_size, config.seq_len, m.hidden_size, m.num_layers, m.num_heads, m.dropout
        )
    return CharLM(
        corpus.vocab_size,
        m.cell,
        m.hidden_size,
        m.num_layers,
        m.embed_size,
        m.dropout,
        m.unroll,
        **{name: m[name] for name in _REGULARISERS},
        precision=_precision.name(config),
    )


def initial_carry(config, model: CharLM):
    """The zero state of the stack with truncated BPTT, ``()`` without."""
    return model.initial_state(config.batch_size) if config.data.tbptt else ()


def train_batch(config, corpus: data.CharCorpus, step: int) -> dict:
    """The batch of ``step``: a pure function of (seed, step)."""
    args = (corpus.train, config.seed, step, config.batch_size, config.seq_len)
    if config.data.tbptt:
        inputs, targets, reset = data.stream_windows(*args)
    else:
        (inputs, targets), reset = data.random_windows(*args), True
    return {"inputs": inputs, "targets": targets, "reset": np.bool_(reset)}


def make_loss_fn(config, model: CharLM):
    """Mean next-character cross-entropy (nats); the carry is the model state when ``tbptt``."""
    tbptt = config.data.tbptt

    def loss_fn(params, carry, batch, key):
        state = None
        if tbptt:
            state = jax.tree.map(lambda c: jnp.where(batch["reset"], 0.0, c), carry)
        logits, state = model.apply(params, batch["inputs"], state, dropout_key=key)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
        loss = jnp.mean(nll)
        accuracy = jnp.mean((jnp.argmax(logits, -1) == batch["targets"]).astype(jnp.float32))
        aux = {"accuracy": accuracy, "bits_per_char": loss / jnp.log(2.0)}
        return loss, (state if tbptt else (), aux)

    return loss_fn


def _make_eval_step(model: CharLM, tbptt: bool):
    """Jitted ``eval_step(params, carry, batch) -> (carry, masked sums)``, without dropout."""

    def eval_step(params, carry, batch):
        inputs, targets, mask = batch
        logits, state = model.apply(params, inputs, carry if tbptt else None)
        return (state if tbptt else ()), training.masked_sums(logits, targets, mask)

    return jax.jit(eval_step)


def make_evaluator(config, model: CharLM, corpus: data.CharCorpus):
    """``evaluate(params, final)``: loss per character over the validation split (the training
    text without one), its first ``eval_max_tokens`` unless ``final``."""
    eval_step = _make_eval_step(model, config.data.tbptt)
    all_tokens = corpus.valid if len(corpus.valid) else corpus.train

    def evaluate(params, final: bool) -> dict:
        tokens = all_tokens
        if config.eval_max_tokens and not final:
            tokens = tokens[: config.eval_max_tokens + 1]
        batches = data.eval_windows(tokens, config.eval_batch_size, config.seq_len)
        carry = model.initial_state(config.eval_batch_size) if config.data.tbptt else ()
        metrics = training.evaluate(eval_step, params, batches, carry)
        metrics["bits_per_char"] = metrics.pop("bits_per_token")
        return metrics

    return evaluate


def make_show(config, model: CharLM, corpus: data.CharCorpus):
    """``sample(params, step) -> str``: text streamed with the cells' step API from a newline."""
    first = "\n" if "\n" in corpus.vocab else corpus.decode(corpus.train[:1])
    prompt = jnp.asarray(corpus.encode(first))
    run = jax.jit(model.sample, static_argnums=3)

    def sample(params, step: int) -> str:
        key = jax.random.fold_in(jax.random.PRNGKey(config.seed + 1), step)
        tokens = run(params, key, prompt, config.sample_length, config.sample_temperature)
        return first + corpus.decode(jax.device_get(tokens))

    return sample
