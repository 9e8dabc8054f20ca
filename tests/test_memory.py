"""The adding and copy tasks, chrono and identity initialisation, the trainer's diagnostics."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from experiments import config_cli, train
from experiments.configs import adding, copy
from experiments.tasks import memory


def test_adding_batch_targets_are_the_sums_of_the_two_marked_values():
    batch = memory.adding_batch(np.random.default_rng(0), 500, 20)
    values, markers = batch["inputs"][..., 0], batch["inputs"][..., 1]
    assert batch["inputs"].shape == (500, 20, 2)
    np.testing.assert_array_equal(markers[:, :10].sum(1), 1)  # one mark in each half
    np.testing.assert_array_equal(markers[:, 10:].sum(1), 1)
    np.testing.assert_allclose(batch["targets"], (values * markers).sum(1), rtol=1e-6)
    # Predicting the mean (1) costs Var(U1 + U2) = 1/6.
    assert abs(np.mean((batch["targets"] - 1.0) ** 2) - 1 / 6) < 0.02


def test_copy_batch_layout_and_memoryless_baseline():
    batch = memory.copy_batch(np.random.default_rng(0), 4, 7)
    inputs, targets = batch["inputs"], batch["targets"]
    assert inputs.shape == targets.shape == (4, 27)
    np.testing.assert_array_equal(targets[:, -10:], inputs[:, :10])
    assert np.all((inputs[:, :10] >= 1) & (inputs[:, :10] <= 8))
    np.testing.assert_array_equal(inputs[:, 16], 9)  # delimiter after T - 1 = 6 blanks
    assert np.all(inputs[:, 10:16] == 0) and np.all(inputs[:, 17:] == 0)
    assert np.all(targets[:, :-10] == 0)
    # A model that outputs blanks exactly and a uniform guess at the 10 recall steps.
    probabilities = np.where(np.arange(9) == 0, 1.0, 0.0)[None].repeat(27, 0)
    probabilities[-10:] = np.r_[0.0, np.full(8, 1 / 8)]
    loss = -np.mean(np.log(probabilities[np.arange(27), targets[0]]))
    np.testing.assert_allclose(loss, 10 * math.log(8) / 27)


def test_batches_are_a_pure_function_of_seed_and_step():
    config = adding.get_config("tiny")
    a = memory.train_batch(config, None, 3)
    b = memory.train_batch(config, None, 3)
    c = memory.train_batch(config, None, 4)
    np.testing.assert_array_equal(a["inputs"], b["inputs"])
    assert not np.array_equal(a["inputs"], c["inputs"])


def test_chrono_initialisation_sets_forget_and_input_biases():
    t_max = 50.0
    cell = rnnjax.cells.LSTMCell(200, chrono_init=t_max)
    params = cell.init(jax.random.PRNGKey(0), 3)
    total = params.b_ih + params.b_hh
    forget, input_gate = total[200:400], total[:200]
    assert jnp.all(forget >= 0.0) and jnp.all(forget <= math.log(t_max - 1) + 1e-6)
    np.testing.assert_array_equal(input_gate, -forget)
    # log of U[1, T_max - 1]: the gates' time scales 1 / (1 - sigmoid(b_f)) spread up to T_max.
    np.testing.assert_allclose(np.mean(np.exp(forget)), t_max / 2, rtol=0.15)
    plain = rnnjax.cells.LSTMCell(200).init(jax.random.PRNGKey(0), 3)
    np.testing.assert_array_equal(params.w_hh, plain.w_hh)  # only the biases change
    np.testing.assert_array_equal(total[400:], (plain.b_ih + plain.b_hh)[400:])
    layer = rnnjax.Stack(cell=cell)  # the layer's cells get the chrono biases too
    layer_bias = layer.init(jax.random.PRNGKey(1), 3)[0].b_ih
    np.testing.assert_array_equal(layer_bias[:200], -layer_bias[200:400])
    assert jnp.all(layer_bias[200:400] >= 0.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(chrono_init=2.0), "chrono_init"),
        (dict(chrono_init=10.0, forget_bias=1.0), "chrono_init and forget_bias"),
        (dict(chrono_init=10.0, bias=False), "chrono_init needs bias=True"),
    ],
)
def test_chrono_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rnnjax.cells.LSTMCell(4, **kwargs)


def test_identity_initialiser_makes_an_irnn():
    cell = rnnjax.cells.ElmanCell(5, "relu", recurrent_init="identity")
    params = cell.init(jax.random.PRNGKey(0), 2)
    np.testing.assert_array_equal(params.w_hh, np.eye(5))
    with pytest.raises(ValueError, match="recurrent_init must be one of"):
        rnnjax.cells.ElmanCell(5, recurrent_init="identty").init(jax.random.PRNGKey(0), 2)


def test_tiny_presets_train_and_log_diagnostics(tmp_path):
    config = copy.get_config("tiny")
    config.model.cell = "lstm"
    config.diagnostics_every = 4
    config_cli.validate(config)
    final = train.train_and_evaluate(config, str(tmp_path))
    assert set(final) >= {"loss", "recall_accuracy", "step"} and final["step"] == 6
    with open(os.path.join(tmp_path, "metrics.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    logged = [r for r in rows if r["split"] == "diagnostics"]
    assert [r["step"] for r in logged] == [1, 4]
    assert {"l0d0/dLdh_t0", "l0d0/lyapunov_max", "l0d0/forget_above"} <= set(logged[0])
    assert os.path.isdir(os.path.join(tmp_path, "tensorboard", "diagnostics"))

    off = adding.get_config("tiny")  # diagnostics_every = 0 by default: nothing is built
    assert off.diagnostics_every == 0
    assert train._make_diagnose(off, memory, None, None) is None


def test_bad_config_fails_with_one_line(tmp_path):
    config = adding.get_config("tiny")
    config.model.cell = "lstn"
    with pytest.raises(config_cli.ConfigError, match="model.cell"):
        config_cli.validate(config)
    config = adding.get_config("tiny")
    config.model.chrono_init = 100
    config.model.forget_bias = 1.0
    with pytest.raises(config_cli.ConfigError, match="chrono_init"):
        config_cli.validate(config)
    config = adding.get_config("tiny")
    config.model.precision = "half"
    with pytest.raises(config_cli.ConfigError, match="model.precision must be one of"):
        config_cli.validate(config)
    config.model.precision = "bfloat16"
    layer = memory.build_model(config, None).layer
    assert isinstance(layer.cell, rnnjax.cells.MixedPrecisionCell)
    config = adding.get_config("tiny")
    config.diagnostics_every = -1
    with pytest.raises(config_cli.ConfigError, match="diagnostics_every"):
        train.train_and_evaluate(config, str(tmp_path))
