"""Long-range memory: the adding problem and the copy task, for any rnnjax layer.

``config.data.problem`` picks the task (both generated as pure functions of (seed, step)):

- ``adding`` (Le et al. 2015): inputs ``[T, 2]``, a value in U[0, 1] and a marker that is 1 at two
  positions (one in each half of the sequence); the target is the sum of the two marked values,
  read from the last step by a linear head. Predicting the mean (1) gives MSE 1/6 = 0.167.
- ``copy`` (Arjovsky et al. 2016): 10 symbols from {1..8}, ``T - 1`` blanks (0), a delimiter (9)
  and 10 blanks; the 10 symbols must be recalled in the last 10 of the ``T + 20`` steps (blank
  elsewhere). Cross-entropy over every step; forgetting the symbols costs 10 ln 8 / (T + 20).

``model.cell`` is ``rnn`` (tanh), ``irnn`` (relu, identity recurrent weights, Le et al. 2015),
``lstm`` or ``gru``. The test set is a fixed seed's ``data.num_test`` sequences.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
from experiments import config_cli
from experiments.tasks import _precision

_TEST_SEED = 20_150_403  # the test sequences are the same for every run
COPY_SYMBOLS = 10  # symbols to remember in the copy task
_COPY_CLASSES = 9  # 0 blank, 1..8 symbols; the delimiter 9 is an input only
CELLS = ("rnn", "irnn", "lstm", "gru")


def build_layer(m) -> rnnjax.Recurrent:
    """The recurrent layer of ``config.model`` (one layer, batch first)."""
    common = dict(recurrent_init=m.recurrent_init) if m.recurrent_init else {}
    if m.cell == "rnn":
        return rnnjax.RNN(m.hidden_size, **common)
    if m.cell == "irnn":
        init = m.recurrent_init or "identity"
        return rnnjax.RNN(
            m.hidden_size, nonlinearity="relu", input_init="glorot_uniform", recurrent_init=init
        )
    if m.cell == "gru":
        return rnnjax.GRU(m.hidden_size, **common)
    chrono = m.chrono_init or None
    cell = rnnjax.cells.LSTMCell(
        m.hidden_size, forget_bias=m.forget_bias, chrono_init=chrono, **common
    )
    return rnnjax.Stack(cell=cell)


@dataclasses.dataclass(frozen=True)
class MemoryModel:
    """A recurrent layer and a linear head: ``[B, T, I] -> [B, T, K]`` (K = 1 for adding)."""

    layer: rnnjax.Recurrent
    input_size: int
    output_size: int

    def init(self, key):
        k_layer, k_head = jax.random.split(key)
        head = jax.nn.initializers.glorot_uniform()(
            k_head, (self.layer.output_size, self.output_size)
        )
        return {
            "rnn": self.layer.init(k_layer, self.input_size),
            "head": {"w": head, "b": jnp.zeros((self.output_size,))},
        }

    def head(self, params, outputs):
        return outputs @ params["head"]["w"] + params["head"]["b"][None, None, :]

    def apply(self, params, inputs):
        outputs, _ = self.layer(params["rnn"], inputs)
        return self.head(params, outputs)


def validate(config) -> None:
    config_cli.check_positive_ints(config, "data.seq_len", "data.num_test", "model.hidden_size")
    config_cli.check_choice(config, "data.problem", ("adding", "copy"))
    config_cli.check_choice(config, "model.cell", CELLS)
    _precision.validate(config)
    m = config.model
    if m.chrono_init and (m.chrono_init <= 2 or m.forget_bias is not None or m.cell != "lstm"):
        raise config_cli.ConfigError(
            f"config.model.chrono_init must be 0 (off) or a T_max above 2 for cell 'lstm' without "
            f"forget_bias, got {m.chrono_init} (cell {m.cell!r}, forget_bias {m.forget_bias})"
        )
    if config.data.problem == "adding" and config.data.seq_len < 2:
        raise config_cli.ConfigError(
            f"config.data.seq_len must be at least 2 for the adding problem, got "
            f"{config.data.seq_len}"
        )


def adding_batch(rng: np.random.Generator, batch_size: int, seq_len: int) -> dict:
    """``inputs [B, T, 2]`` (value, marker) and ``targets [B]``, the sum of the marked values."""
    values = rng.uniform(0.0, 1.0, (batch_size, seq_len))
    half = seq_len // 2
    first = rng.integers(0, half, batch_size)
    second = rng.integers(half, seq_len, batch_size)
    markers = np.zeros((batch_size, seq_len))
    rows = np.arange(batch_size)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    inputs = np.stack([values, markers], axis=-1).astype(np.float32)
    targets = (values[rows, first] + values[rows, second]).astype(np.float32)
    return {"inputs": inputs, "targets": targets}


def copy_batch(rng: np.random.Generator, batch_size: int, seq_len: int) -> dict:
    """``inputs [B, T + 20]`` and ``targets [B, T + 20]`` integer symbols (see the docstring)."""
    n = COPY_SYMBOLS
    total = seq_len + 2 * n
    symbols = rng.integers(1, 9, (batch_size, n))
    inputs = np.zeros((batch_size, total), np.int32)
    inputs[:, :n] = symbols
    inputs[:, n + seq_len - 1] = 9  # the delimiter: recall starts at the next step
    targets = np.zeros((batch_size, total), np.int32)
    targets[:, -n:] = symbols
    return {"inputs": inputs, "targets": targets}


def _batch(config, rng, batch_size):
    make = adding_batch if config.data.problem == "adding" else copy_batch
    return make(rng, batch_size, config.data.seq_len)


def load_data(config, workdir: str) -> dict:
    """The fixed test set (the training batches are drawn per step)."""
    del workdir
    return _batch(config, np.random.default_rng(_TEST_SEED), config.data.num_test)


def describe(data: dict) -> str:
    return f"{len(data['targets'])} test sequences of {data['inputs'].shape[1]} steps"


def tokens_per_step(config) -> int:
    extra = 2 * COPY_SYMBOLS if config.data.problem == "copy" else 0
    return config.batch_size * (config.data.seq_len + extra)


def build_model(config, data) -> MemoryModel:
    del data
    layer = _precision.layer(config, build_layer(config.model))
    if config.data.problem == "adding":
        return MemoryModel(layer, 2, 1)
    return MemoryModel(layer, 10, _COPY_CLASSES)


def initial_carry(config, model):
    return ()


def train_batch(config, data, step: int) -> dict:
    """A pure function of (seed, step)."""
    return _batch(config, np.random.default_rng([config.seed, step]), config.batch_size)


def _layer_inputs(model: MemoryModel, inputs):
    """Copy-task symbols as one-hot vectors; adding-problem inputs as they are."""
    if model.input_size == 2:
        return inputs
    return jax.nn.one_hot(inputs, model.input_size)


def _losses(model: MemoryModel, predictions, targets) -> dict:
    """Per-example metrics from the head's ``[B, T, K]`` predictions."""
    if model.output_size == 1:
        mse = (predictions[:, -1, 0] - targets) ** 2
        return {"loss": mse, "mse": mse}
    xent = optax.softmax_cross_entropy_with_integer_labels(predictions, targets)
    recalled = jnp.argmax(predictions[:, -COPY_SYMBOLS:], -1) == targets[:, -COPY_SYMBOLS:]
    return {
        "loss": jnp.mean(xent, axis=1),
        "recall_accuracy": jnp.mean(recalled.astype(jnp.float32), axis=1),
    }


def head_loss(model: MemoryModel, params, batch):
    """``loss(outputs [B, T, H]) -> scalar``: the batch's mean loss from the layer's outputs."""

    def loss(outputs):
        return jnp.mean(_losses(model, model.head(params, outputs), batch["targets"])["loss"])

    return loss


def make_loss_fn(config, model: MemoryModel):
    def loss_fn(params, carry, batch, key):
        del key
        predictions = model.apply(params, _layer_inputs(model, batch["inputs"]))
        means = {k: jnp.mean(v) for k, v in _losses(model, predictions, batch["targets"]).items()}
        return means.pop("loss"), (carry, means)

    return loss_fn


def make_evaluator(config, model: MemoryModel, data):
    """The mean metrics over the test set (``mse`` or ``recall_accuracy`` besides ``loss``)."""

    @jax.jit
    def sums(params, inputs, targets):
        predictions = model.apply(params, _layer_inputs(model, inputs))
        return {k: jnp.sum(v) for k, v in _losses(model, predictions, targets).items()}

    def evaluate(params, final: bool) -> dict:
        del final
        count = len(data["targets"])
        totals = {}
        for start in range(0, count, config.eval_batch_size):
            part = slice(start, start + config.eval_batch_size)
            for k, v in jax.device_get(
                sums(params, data["inputs"][part], data["targets"][part])
            ).items():
                totals[k] = totals.get(k, 0.0) + float(v)
        return {k: v / count for k, v in totals.items()}

    return evaluate


def make_show(config, model, data):
    return lambda params, step: ""


def diagnostics_probe(config, model: MemoryModel, data, params):
    """The trainer's diagnostics hook (see ``experiments/tasks/__init__.py``)."""
    batch = {k: v[: config.diagnostics_batch] for k, v in data.items()}
    inputs = _layer_inputs(model, jnp.asarray(batch["inputs"]))
    return model.layer, params["rnn"], inputs, head_loss(model, params, batch)
