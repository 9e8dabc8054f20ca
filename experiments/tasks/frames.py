"""CNN + RNN on frames: which digit moves across the canvas, and in which direction?

A Flax model as a Flax user writes it: ``nn.Conv`` layers applied to every frame (spatial
features), ``rnnjax.flax.LSTM`` over the frames (temporal features), two linear heads on its final
hidden state (digit, direction). ``model.temporal="mean"`` replaces the LSTM by the mean of the
frame features (the CNN-only baseline); ``data.shuffle_frames=True`` shows the frames in a random
order (does the model use the order?). Data: ``_moving_digits``; config:
``experiments/configs/moving_digits.py``.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax.flax as rf
from experiments import config_cli
from experiments.tasks import _moving_digits as md
from rnnjax.data import DataError

_VALID_SEED = 20_240_601  # the validation trajectories are the same for every run and ablation


class FrameClassifier(nn.Module):
    """``[B, T, C, C]`` frames -> (digit logits ``[B, 10]``, direction logits ``[B, K]``)."""

    num_directions: int
    conv_features: tuple = (16, 32)
    frame_features: int = 64
    hidden_size: int = 64
    num_layers: int = 1
    temporal: str = "lstm"  # or "mean": no recurrence, the mean of the frame features
    dropout: float = 0.0

    @nn.compact
    def __call__(self, frames, *, train: bool):
        batch, num_frames, height, width = frames.shape
        x = frames.reshape(batch * num_frames, height, width, 1)  # every frame through one CNN
        for features in self.conv_features:
            x = nn.relu(nn.Conv(features, (3, 3), strides=(2, 2))(x))
        # Where the digit is (a dense layer over the feature map) and what it is (the maximum of
        # each feature over the canvas, the same wherever the digit stands).
        where = nn.relu(nn.Dense(self.frame_features)(x.reshape(batch, num_frames, -1)))
        what = jnp.max(x, axis=(1, 2)).reshape(batch, num_frames, -1)
        x = jnp.concatenate([where, what], axis=-1)  # [B, T, F + last conv features]
        if self.temporal == "lstm":
            lstm = rf.LSTM(self.hidden_size, self.num_layers, dropout=self.dropout)
            _, state = lstm(x, deterministic=not train, return_state=True)
            h = state.hidden[-1]  # the last layer's final hidden state [B, H]
        else:
            h = nn.relu(nn.Dense(self.hidden_size)(jnp.mean(x, axis=1)))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Dense(10, name="digit")(h), nn.Dense(self.num_directions, name="direction")(h)


@dataclasses.dataclass(frozen=True)
class FramesModel:
    """The trainer's view of the Flax model: ``init(key)`` and ``apply(params, frames, key)``."""

    net: FrameClassifier
    num_frames: int
    canvas: int

    def init(self, key):
        frames = jnp.zeros((1, self.num_frames, self.canvas, self.canvas))
        return self.net.init(key, frames, train=False)["params"]

    def apply(self, params, frames, dropout_key=None):
        """Logits; dropout (and the LSTM's dropout between layers) only with ``dropout_key``."""
        train = dropout_key is not None
        rngs = {"dropout": dropout_key} if train else {}
        return self.net.apply({"params": params}, frames, train=train, rngs=rngs)


@dataclasses.dataclass(frozen=True, eq=False)
class FramesData:
    train_digits: np.ndarray  # [N, S, S]
    train_labels: np.ndarray  # [N]
    valid_digits: np.ndarray
    valid_labels: np.ndarray
    valid_paths: md.Trajectories


def _geometry(config) -> dict:
    d = config.data
    return dict(
        num_frames=d.num_frames,
        canvas=d.canvas,
        digit_size=d.digit_size,
        num_directions=d.num_directions,
        max_speed=d.max_speed,
        shuffle_frames=d.shuffle_frames,
    )


def validate(config) -> None:
    """Raises ``ConfigError`` for fields that cannot run."""
    config_cli.check_positive_ints(
        config, "eval_batch_size", "data.num_frames", "data.canvas", "data.max_speed",
        "data.num_valid", "model.hidden_size", "model.num_layers", "model.frame_features",
    )  # fmt: skip
    config_cli.check_choice(config, "data.digit_size", (7, 14, 28))
    config_cli.check_choice(config, "data.num_directions", (4, 8))
    config_cli.check_choice(config, "model.temporal", ("lstm", "mean"))
    config_cli.check_range(config, "model.dropout", 0.0, 1.0)
    d = config.data
    need = d.digit_size + (d.num_frames - 1) * d.max_speed
    if d.canvas < need:
        raise config_cli.ConfigError(
            f"config.data.canvas must be at least digit_size + (num_frames - 1) * max_speed = "
            f"{need} for the digit to stay on the canvas, got {d.canvas}"
        )


def load_data(config, workdir: str) -> FramesData:
    """The last ``data.num_valid`` digits validate (on fixed trajectories), the others train."""
    del workdir  # no vocabulary: the classes are fixed
    digits, labels = md.load_digits(config.data.dir, config.data.digit_size)
    split = len(digits) - config.data.num_valid
    if split < 1:
        raise DataError(
            f"config.data.num_valid={config.data.num_valid} leaves no training digits of "
            f"{len(digits)} in {config.data.dir!r}"
        )
    paths = md.sample_trajectories(
        np.random.default_rng(_VALID_SEED), len(digits) - split, **_geometry(config)
    )
    return FramesData(digits[:split], labels[:split], digits[split:], labels[split:], paths)


def describe(d: FramesData) -> str:
    t = d.valid_paths.ys.shape[1]
    return f"{len(d.train_digits)} train / {len(d.valid_digits)} validation digits, {t} frames"


def tokens_per_step(config) -> int:
    return config.batch_size * config.data.num_frames  # frames per step


def build_model(config, d: FramesData) -> FramesModel:
    m = config.model
    net = FrameClassifier(
        num_directions=config.data.num_directions,
        conv_features=tuple(m.conv_features),
        frame_features=m.frame_features,
        hidden_size=m.hidden_size,
        num_layers=m.num_layers,
        temporal=m.temporal,
        dropout=m.dropout,
    )
    return FramesModel(net, config.data.num_frames, config.data.canvas)


def initial_carry(config, model):
    return ()


def train_batch(config, d: FramesData, step: int) -> dict:
    """A pure function of (seed, step): random digits on fresh random trajectories."""
    rng = np.random.default_rng([config.seed, step])
    rows = rng.integers(len(d.train_digits), size=config.batch_size)
    paths = md.sample_trajectories(rng, config.batch_size, **_geometry(config))
    everything = np.arange(config.batch_size)
    return {
        "frames": md.render(d.train_digits[rows], paths, everything, config.data.canvas),
        "digits": d.train_labels[rows],
        "directions": paths.directions.astype(np.int32),
    }


def _metrics(logits, batch) -> dict:
    digit, direction = logits
    digit_ok = jnp.argmax(digit, -1) == batch["digits"]
    direction_ok = jnp.argmax(direction, -1) == batch["directions"]
    return {
        "digit_loss": optax.softmax_cross_entropy_with_integer_labels(digit, batch["digits"]),
        "direction_loss": optax.softmax_cross_entropy_with_integer_labels(
            direction, batch["directions"]
        ),
        "accuracy": (digit_ok & direction_ok).astype(jnp.float32),
        "digit_accuracy": digit_ok.astype(jnp.float32),
        "direction_accuracy": direction_ok.astype(jnp.float32),
    }


def make_loss_fn(config, model: FramesModel):
    """The sum of the two heads' mean cross-entropies; accuracies as extra metrics."""

    def loss_fn(params, carry, batch, key):
        per_example = _metrics(model.apply(params, batch["frames"], dropout_key=key), batch)
        means = {name: jnp.mean(v) for name, v in per_example.items()}
        return means["digit_loss"] + means["direction_loss"], (carry, means)

    return loss_fn


def _valid_batches(config, d: FramesData, count: int):
    size = config.eval_batch_size
    for start in range(0, count, size):
        rows = np.arange(start, min(start + size, count))
        batch = {
            "frames": md.render(d.valid_digits[rows], d.valid_paths, rows, config.data.canvas),
            "digits": d.valid_labels[rows],
            "directions": d.valid_paths.directions[rows].astype(np.int32),
        }
        yield rows, batch


def make_evaluator(config, model: FramesModel, d: FramesData):
    """``evaluate(params, final)``: the first ``eval_examples`` validation sequences, all when
    ``final``; loss (the sum of the two heads') and accuracies (both right, digit, direction)."""

    @jax.jit
    def per_example(params, batch):
        return _metrics(model.apply(params, batch["frames"]), batch)

    def evaluate(params, final: bool) -> dict:
        count = len(d.valid_digits) if final else min(config.eval_examples, len(d.valid_digits))
        sums = {}
        for _, batch in _valid_batches(config, d, count):
            for name, values in jax.device_get(per_example(params, batch)).items():
                sums[name] = sums.get(name, 0.0) + float(np.sum(values))
        out = {name: total / count for name, total in sums.items()}
        out["loss"] = out.pop("digit_loss") + out.pop("direction_loss")
        out["examples"] = float(count)
        return out

    return evaluate


def make_show(config, model: FramesModel, d: FramesData):
    """A few validation sequences: true and predicted digit and direction."""
    apply = jax.jit(lambda params, frames: model.apply(params, frames))
    count = min(config.show_examples, len(d.valid_digits))

    def show(params, step: int) -> str:
        del step
        if not count:
            return ""
        _, batch = next(_valid_batches(config, d, count))
        digit, direction = jax.device_get(apply(params, batch["frames"]))
        names = md.DIRECTION_NAMES
        return "\n".join(
            f"digit {batch['digits'][i]} moving {names[batch['directions'][i]]} | predicted "
            f"{digit[i].argmax()} moving {names[direction[i].argmax()]}"
            for i in range(count)
        )

    return show
