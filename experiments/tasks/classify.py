"""Sequence classification: labelled sentences (GLUE TSV) -> a many-to-one recurrent classifier.

Config: ``experiments/configs/sst2.py``. The vocabulary and the number of classes are saved in
``<workdir>/vocab.json`` at the start of a run; resuming and ``experiments.predict`` reuse them.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
from experiments import config_cli
from experiments.tasks import _precision
from experiments.tasks._files import write_atomically
from experiments.tasks._metrics import classification_metrics
from rnnjax import data
from rnnjax.models import POOLINGS, SequenceClassifier

LAYERS = {"rnn": rnnjax.RNN, "lstm": rnnjax.LSTM, "gru": rnnjax.GRU}


@dataclasses.dataclass(frozen=True, eq=False)
class ClassifyData:
    vocab: list
    num_classes: int
    boundaries: tuple
    train: data.LabelledSequences | None
    valid: data.LabelledSequences | None


def validate(config) -> None:
    """Raises ``ConfigError`` for classification fields that cannot run."""
    config_cli.check_positive_ints(
        config, "eval_batch_size", "model.hidden_size", "model.num_layers", "model.embed_size"
    )
    config_cli.check_choice(config, "model.cell", tuple(LAYERS))
    _precision.validate(config)
    config_cli.check_choice(config, "model.pooling", POOLINGS)
    config_cli.check_range(config, "model.dropout", 0.0, 1.0)
    config_cli.check_range(config, "model.word_dropout", 0.0, 1.0)
    buckets = tuple(config.data.buckets)
    if not buckets or any(not isinstance(b, int) or b < 1 for b in buckets):
        raise config_cli.ConfigError(
            f"config.data.buckets must be increasing positive integers, got {buckets!r}"
        )
    if list(buckets) != sorted(set(buckets)):
        raise config_cli.ConfigError(f"config.data.buckets must be increasing, got {buckets!r}")
    if not (config.data.dir or config.data.train_path):
        raise config_cli.ConfigError(
            "set config.data.dir (a folder with train.tsv[.gz] and dev.tsv) or "
            "config.data.train_path"
        )


def _paths(config) -> tuple[str, str]:
    d = config.data
    train = d.train_path or os.path.join(d.dir, d.train_file)
    valid = d.valid_path or (os.path.join(d.dir, d.valid_file) if d.dir else "")
    return train, valid


def load_data(config, workdir: str) -> ClassifyData:
    """Training and validation sentences; the vocabulary comes from the training file."""
    train_path, valid_path = _paths(config)
    texts, labels = data.read_tsv(train_path)
    if labels is None:
        raise data.DataError(f"training file {train_path!r} has no 'label' column")
    if not texts:
        raise data.DataError(f"training file {train_path!r} has no rows after its header")
    if labels.min() < 0:
        raise data.DataError(f"training file {train_path!r} has a negative label {labels.min()}")
    vocab_file = os.path.join(workdir, "vocab.json")
    if os.path.exists(vocab_file):
        vocab, num_classes = _read_vocab(vocab_file)
    else:
        vocab = data.build_vocab(
            texts, min_count=config.data.min_count, max_size=config.data.max_vocab
        )
        num_classes = max(int(labels.max()) + 1, 2)
        write_atomically(vocab_file, json.dumps({"vocab": vocab, "num_classes": num_classes}))
    train = data.encode(texts, vocab, labels)
    valid = None
    if valid_path:
        valid_texts, valid_labels = data.read_tsv(valid_path)
        if valid_labels is None or not valid_texts:
            raise data.DataError(f"validation file {valid_path!r} needs rows and a 'label' column")
        valid = data.encode(valid_texts, vocab, valid_labels)
    for name, part in (("training", train), ("validation", valid)):
        if part is not None and part.labels.max() >= num_classes:
            raise data.DataError(
                f"the {name} labels reach {part.labels.max()}, the model has {num_classes} classes"
            )
    return ClassifyData(vocab, num_classes, tuple(config.data.buckets), train, valid)


def load_inference_data(config, workdir: str) -> ClassifyData:
    vocab, num_classes = _read_vocab(os.path.join(workdir, "vocab.json"))
    return ClassifyData(vocab, num_classes, tuple(config.data.buckets), None, None)


def _read_vocab(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        return saved["vocab"], saved["num_classes"]
    except (OSError, ValueError, KeyError) as e:
        raise data.DataError(f"cannot read the run's vocabulary {path!r}: {e}") from None


def describe(d: ClassifyData) -> str:
    valid = len(d.valid) if d.valid is not None else 0
    return (
        f"{len(d.train)} train / {valid} validation sequences, vocabulary {len(d.vocab)}, "
        f"{d.num_classes} classes, buckets {list(d.boundaries)}"
    )


def tokens_per_step(config) -> int:
    return config.batch_size  # sequences: tok/s in the console line reads sequences/s


def build_model(config, d: ClassifyData) -> SequenceClassifier:
    m = config.model
    layer = LAYERS[m.cell](
        m.hidden_size, m.num_layers, bidirectional=m.bidirectional, dropout=m.dropout
    )
    layer = _precision.layer(config, layer)
    return SequenceClassifier(
        layer,
        d.num_classes,
        vocab_size=len(d.vocab),
        embed_size=m.embed_size,
        pooling=m.pooling,
        head_sizes=tuple(m.head_sizes),
        dropout=m.dropout,
        word_dropout=m.word_dropout,
        unk_id=d.vocab.index(data.UNK),
    )


def initial_carry(config, model):
    return ()


def train_batch(config, d: ClassifyData, step: int) -> dict:
    """A pure function of (seed, step): one length bucket, padded to its boundary."""
    return data.bucketed_batch(d.train, d.boundaries, config.batch_size, config.seed, step)


def make_loss_fn(config, model: SequenceClassifier):
    """Mean cross-entropy of the batch; accuracy as an extra metric."""

    def loss_fn(params, carry, batch, key):
        logits = model.apply(params, batch["inputs"], batch["lengths"], dropout_key=key)
        loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]))
        accuracy = jnp.mean((jnp.argmax(logits, -1) == batch["labels"]).astype(jnp.float32))
        return loss, (carry, {"accuracy": accuracy})

    return loss_fn


def make_probabilities(model: SequenceClassifier):
    """Jitted ``probabilities(params, inputs, lengths) -> [B, C]``, without dropout."""
    return jax.jit(lambda p, x, n: jax.nn.softmax(model.apply(p, x, n), axis=-1))


def predict_all(probabilities, params, sequences, boundaries, batch_size: int) -> np.ndarray:
    """``[N, C]`` class probabilities of every sequence, in the input order."""
    out = np.zeros((len(sequences), 0), np.float32)
    order = np.concatenate(
        [np.flatnonzero(data.bucket_of(sequences.lengths, boundaries) == b) for b in
         range(len(boundaries))]
    )  # fmt: skip
    rows = []
    for batch, weights in data.eval_batches(sequences, boundaries, batch_size):
        probs = np.asarray(probabilities(params, batch["inputs"], batch["lengths"]))
        rows.append(probs[weights > 0])
    if rows:
        out = np.zeros((len(sequences), rows[0].shape[1]), np.float32)
        out[order] = np.concatenate(rows)
    return out


def make_evaluator(config, model: SequenceClassifier, d: ClassifyData):
    """``evaluate(params, final)``: loss and accuracy over the whole validation file."""
    probabilities = make_probabilities(model)
    held_out = d.valid if d.valid is not None else d.train

    def evaluate(params, final: bool) -> dict:
        del final  # the validation file is small: always all of it
        probs = predict_all(probabilities, params, held_out, d.boundaries, config.eval_batch_size)
        return classification_metrics(probs, held_out.labels)

    return evaluate


def make_show(config, model: SequenceClassifier, d: ClassifyData):
    """A few validation sentences with the predicted class and its probability."""
    probabilities = make_probabilities(model)
    held_out = d.valid if d.valid is not None else d.train
    rows = np.arange(min(config.show_examples, len(held_out)))

    def show(params, step: int) -> str:
        del step
        if not len(rows):
            return ""
        batch = held_out.batch(rows, int(max(held_out.lengths[rows].max(), 1)))
        probs = np.asarray(probabilities(params, batch["inputs"], batch["lengths"]))
        lines = []
        for i, p in zip(rows, probs, strict=True):
            words = [
                d.vocab[t] for t in held_out.tokens[held_out.offsets[i] : held_out.offsets[i + 1]]
            ]
            lines.append(
                f"label {held_out.labels[i]} | predicted {p.argmax()} ({p.max():.2f}) | "
                + " ".join(words)[:100]
            )
        return "\n".join(lines)

    return show


def predict(config, model, params, d: ClassifyData, input_path: str, output_path: str) -> str:
    """Writes ``prediction<TAB>probability`` per row of ``input_path`` (a TSV with a ``sentence``
    column); with a ``label`` column, returns the accuracy."""
    texts, labels = data.read_tsv(input_path)
    sequences = data.encode(texts, d.vocab, labels)
    probs = predict_all(
        make_probabilities(model), params, sequences, d.boundaries, config.eval_batch_size
    )
    predicted = probs.argmax(-1) if len(texts) else np.zeros(0, np.int64)
    rows = [f"{label}\t{p[label]:.6f}\n" for label, p in zip(predicted, probs, strict=True)]
    write_atomically(output_path, "prediction\tprobability\n" + "".join(rows))
    if labels is None or not len(labels):
        return f"wrote {len(texts)} predictions to {output_path}"
    accuracy = float(np.mean(predicted == labels))
    return f"accuracy {accuracy:.4f} on {len(labels)} rows (predictions in {output_path})"
