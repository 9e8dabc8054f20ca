"""Sequential digits: an image read as a sequence (row by row, pixel by pixel, or pixels in a fixed
random order) -> a many-to-one recurrent classifier (``rnnjax.models.SequenceClassifier``).

Data: MNIST's official 10k test images (``data.source="mnist"``, IDX files) or the 1,797 8x8
digits (``"digits"``, CSV), split by ``rnnjax.data.holdout_split`` (every 5th image held out:
8,000 / 2,000 and 1,438 / 359). Pixels are scaled to [0, 1]. Training batches may shift each
image by up to ``data.max_shift`` pixels (zero fill) before it becomes a sequence. Evaluation:
accuracy and cross-entropy over the whole held-out part. Config:
``experiments/configs/sequential_mnist.py``.
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
from experiments import config_cli
from experiments.tasks import _precision
from experiments.tasks._metrics import classification_metrics
from rnnjax import data
from rnnjax.models import POOLINGS, SequenceClassifier

LAYERS = {"rnn": rnnjax.RNN, "lstm": rnnjax.LSTM, "gru": rnnjax.GRU}
SOURCES = ("mnist", "digits")


@dataclasses.dataclass(frozen=True, eq=False)
class ImageData:
    train: data.LabelledImages
    held_out: data.LabelledImages
    num_classes: int
    permutation: np.ndarray | None  # [T] step order of the permuted task, else None

    def sequences(self, images: np.ndarray, order: str) -> np.ndarray:
        return data.image_sequences(images, order, self.permutation)


def validate(config) -> None:
    """Raises ``ConfigError`` for fields that cannot run."""
    config_cli.check_positive_ints(
        config, "eval_batch_size", "model.hidden_size", "model.num_layers", "data.holdout_every"
    )
    config_cli.check_choice(config, "model.cell", tuple(LAYERS))
    _precision.validate(config)
    config_cli.check_choice(config, "model.pooling", POOLINGS)
    config_cli.check_choice(config, "data.source", SOURCES)
    config_cli.check_choice(config, "data.order", data.ORDERS)
    config_cli.check_range(config, "model.dropout", 0.0, 1.0)
    config_cli.check_range(config, "model.layer_dropout", 0.0, 1.0)
    config_cli.check_choice(config, "model.recurrent_init", ("uniform", "orthogonal"))
    if config.model.forget_bias is not None and config.model.cell != "lstm":
        raise config_cli.ConfigError(
            f"config.model.forget_bias is for cell='lstm', got cell={config.model.cell!r}"
        )
    if config.data.holdout_every < 2:
        raise config_cli.ConfigError(
            f"config.data.holdout_every must be >= 2, got {config.data.holdout_every!r}"
        )
    for name in ("max_shift", "train_limit", "held_out_limit"):
        value = config.data[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise config_cli.ConfigError(f"config.data.{name} must be an int >= 0, got {value!r}")


def load_data(config, workdir: str) -> ImageData:
    """Reads the images, splits them, and fixes the permutation (``data.permutation_seed``)."""
    del workdir  # nothing to save: the split and the permutation follow from the config
    d = config.data
    if d.source == "mnist":
        images = data.read_mnist(
            os.path.join(d.mnist_dir, d.mnist_images), os.path.join(d.mnist_dir, d.mnist_labels)
        )
    else:
        images = data.read_digits_csv(d.digits_path)
    if len(images) < d.holdout_every:
        raise data.DataError(
            f"{len(images)} images: fewer than one held-out image every {d.holdout_every}"
        )
    train, held_out = data.holdout_split(images, d.holdout_every)
    if d.train_limit:
        train = train.take(np.arange(min(d.train_limit, len(train))))
    if d.held_out_limit:
        held_out = held_out.take(np.arange(min(d.held_out_limit, len(held_out))))
    permutation = None
    if d.permute:
        _, h, w = images.images.shape
        permutation = data.pixel_permutation(h if d.order == "rows" else h * w, d.permutation_seed)
    num_classes = max(int(images.labels.max()) + 1, 2)
    return ImageData(train, held_out, num_classes, permutation)


def describe(d: ImageData) -> str:
    _, h, w = d.train.images.shape
    order = "permuted steps" if d.permutation is not None else "steps in reading order"
    return (
        f"{len(d.train)} train / {len(d.held_out)} held-out {h}x{w} images, {d.num_classes} "
        f"classes, {order}"
    )


def tokens_per_step(config) -> int:
    return config.batch_size  # images: tok/s in the console line reads images/s


def build_model(config, d: ImageData) -> SequenceClassifier:
    m = config.model
    # The LSTM's forget-gate bias (1.0 in Jozefowicz et al., 2015) keeps its memory open early.
    extra = {"forget_bias": m.forget_bias} if m.forget_bias is not None else {}
    layer = LAYERS[m.cell](
        m.hidden_size,
        m.num_layers,
        bidirectional=m.bidirectional,
        dropout=m.layer_dropout,
        recurrent_init=m.recurrent_init,
        **extra,
    )
    layer = _precision.layer(config, layer)
    features = d.sequences(d.train.images[:1], config.data.order).shape[-1]
    return SequenceClassifier(
        layer,
        d.num_classes,
        input_size=features,
        pooling=m.pooling,
        head_sizes=tuple(m.head_sizes),
        dropout=m.dropout,
    )


def initial_carry(config, model):
    return ()


def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def train_batch(config, d: ImageData, step: int) -> dict:
    """A pure function of (seed, step): the next ``batch_size`` images of the epochs' shuffles,
    shifted by up to ``max_shift`` pixels, as ``{"inputs" [B, T, F], "labels" [B]}``."""
    n, b = len(d.train), config.batch_size
    positions = np.arange(step * b, (step + 1) * b)
    epochs = positions // n
    orders = {e: _epoch_order(config.seed, int(e), n) for e in np.unique(epochs)}
    indices = np.array([orders[e][p % n] for e, p in zip(epochs, positions, strict=True)])
    images = d.train.images[indices]
    if config.data.max_shift:
        rng = np.random.default_rng([config.seed, step, 1])
        shifts = rng.integers(-config.data.max_shift, config.data.max_shift + 1, size=(b, 2))
        images = data.shift_images(images, shifts)
    return {"inputs": d.sequences(images, config.data.order), "labels": d.train.labels[indices]}


def make_loss_fn(config, model: SequenceClassifier):
    """Mean cross-entropy of the batch; accuracy as an extra metric."""

    def loss_fn(params, carry, batch, key):
        logits = model.apply(params, batch["inputs"], dropout_key=key)
        loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]))
        accuracy = jnp.mean((jnp.argmax(logits, -1) == batch["labels"]).astype(jnp.float32))
        return loss, (carry, {"accuracy": accuracy})

    return loss_fn


def make_probabilities(model: SequenceClassifier):
    """Jitted ``probabilities(params, inputs [B, T, F]) -> [B, C]``, without dropout."""
    return jax.jit(lambda p, x: jax.nn.softmax(model.apply(p, x), axis=-1))


def predict_all(config, probabilities, params, d: ImageData) -> np.ndarray:
    """``[N, C]`` probabilities of every held-out image, in batches of one shape (one compile)."""
    size, n = config.eval_batch_size, len(d.held_out)
    rows = []
    for start in range(0, n, size):
        images = d.held_out.images[start : start + size]
        padded = np.zeros((size, *images.shape[1:]), np.float32)
        padded[: len(images)] = images
        probs = probabilities(params, d.sequences(padded, config.data.order))
        rows.append(np.asarray(probs)[: len(images)])
    return np.concatenate(rows)


def make_evaluator(config, model: SequenceClassifier, d: ImageData):
    """``evaluate(params, final)``: loss and accuracy over the whole held-out part."""
    probabilities = make_probabilities(model)

    def evaluate(params, final: bool) -> dict:
        del final  # at most 2,000 images: always all of them
        probs = predict_all(config, probabilities, params, d)
        return classification_metrics(probs, d.held_out.labels)

    return evaluate


def make_show(config, model: SequenceClassifier, d: ImageData):
    """The first held-out images' labels, predictions and probabilities, on one line."""
    probabilities = make_probabilities(model)
    count = min(config.show_examples, len(d.held_out))

    def show(params, step: int) -> str:
        del step
        if not count:
            return ""
        images = d.held_out.images[:count]
        probs = np.asarray(probabilities(params, d.sequences(images, config.data.order)))
        return " | ".join(
            f"label {y} predicted {p.argmax()} ({p.max():.2f})"
            for y, p in zip(d.held_out.labels[:count], probs, strict=True)
        )

    return show
