"""The moving-digits task: trajectories, frames, the Flax CNN + rnnjax LSTM model, the trainer."""

import gzip
import json
import pathlib

import jax
import numpy as np
import pytest

from experiments import config_cli, train
from experiments.configs import moving_digits
from experiments.tasks import _moving_digits as md
from experiments.tasks import frames
from rnnjax.data import DataError

MNIST = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-test"
needs_mnist = pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST test split not at {MNIST}")
GEOMETRY = dict(num_frames=6, canvas=20, digit_size=7, num_directions=8, max_speed=2)


def _paths(seed, count=400, **changes):
    rng = np.random.default_rng(seed)
    return md.sample_trajectories(rng, count, **{**GEOMETRY, "shuffle_frames": False, **changes})


def test_trajectories_stay_on_the_canvas_and_move_straight():
    paths = _paths(0)
    room = GEOMETRY["canvas"] - GEOMETRY["digit_size"]
    assert paths.ys.min() >= 0 and paths.xs.min() >= 0
    assert paths.ys.max() <= room and paths.xs.max() <= room
    steps = np.asarray(md.DIRECTIONS)[paths.directions]  # [N, 2]
    dy, dx = np.diff(paths.ys, axis=1), np.diff(paths.xs, axis=1)  # [N, T-1]
    speed = np.maximum(np.abs(dy[:, 0]), np.abs(dx[:, 0]))
    np.testing.assert_array_equal(dy, np.broadcast_to(steps[:, :1] * speed[:, None], dy.shape))
    np.testing.assert_array_equal(dx, np.broadcast_to(steps[:, 1:] * speed[:, None], dx.shape))
    assert set(np.unique(paths.directions)) == set(range(8)) and set(speed) == {1, 2}


def test_a_path_and_its_reversal_are_equally_possible():
    """Order-blind models cannot tell E from W: the sets of visited positions coincide."""
    paths = _paths(1, count=20_000, num_directions=4)  # every path drawn (126 per class)
    visited = {d: set() for d in range(4)}
    for d, ys, xs in zip(paths.directions, paths.ys, paths.xs, strict=True):
        visited[d].add(frozenset(zip(ys.tolist(), xs.tolist(), strict=True)))
    assert visited[0] == visited[2] and visited[1] == visited[3]  # E/W and N/S


def test_render_places_the_digit_in_each_frame_and_shuffles_frames():
    digits = np.random.default_rng(0).random((5, 7, 7)).astype(np.float32)
    paths = _paths(2, count=5)
    frames_ = md.render(digits, paths, np.arange(5), GEOMETRY["canvas"])
    assert frames_.shape == (5, 6, 20, 20)
    for b, t in [(0, 0), (3, 5), (4, 2)]:
        y, x = paths.ys[b, t], paths.xs[b, t]
        np.testing.assert_array_equal(frames_[b, t, y : y + 7, x : x + 7], digits[b])
        assert frames_[b, t].sum() == pytest.approx(digits[b].sum(), rel=1e-6)
    shuffled = _paths(2, count=5, shuffle_frames=True)
    mixed = md.render(digits, shuffled, np.arange(5), GEOMETRY["canvas"])
    np.testing.assert_array_equal(
        mixed, np.take_along_axis(frames_, shuffled.orders[..., None, None], 1)
    )
    assert not np.array_equal(shuffled.orders, np.tile(np.arange(6), (5, 1)))


def test_bad_files_and_config_fail_with_one_line(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    # Well-formed IDX files whose images are 2x2, not MNIST's 28x28.
    images = (2051).to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (1, 2, 2))
    (small / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(images + bytes(4)))
    labels = (2049).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\x03"
    (small / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    cases = [
        (lambda: md.load_digits(str(tmp_path), 14), "not found: .*t10k-images-idx3-ubyte.gz"),
        (
            lambda: md.load_digits(str(small), 14),
            r"expected \[N, 28, 28\] images .* got \(1, 2, 2\)",
        ),
    ]
    for call, message in cases:
        with pytest.raises(DataError, match=message) as e:
            call()
        assert "\n" not in str(e.value)
    config = moving_digits.get_config("tiny")
    config.data.canvas = 10
    with pytest.raises(config_cli.ConfigError, match="canvas must be at least .* = 13"):
        config_cli.validate(config)


def test_mean_baseline_ignores_the_order_and_the_lstm_does_not():
    config = moving_digits.get_config("tiny")
    x = np.random.default_rng(0).random((3, 4, 14, 14)).astype(np.float32)
    for temporal, blind in [("mean", True), ("lstm", False)]:
        config.model.temporal = temporal
        model = frames.build_model(config, None)
        params = model.init(jax.random.key(0))
        forward, backward = model.apply(params, x), model.apply(params, x[:, ::-1])
        pairs = zip(forward, backward, strict=True)
        same = all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in pairs)
        assert same == blind, temporal
    assert "l0" in params["LSTM_0"]  # the rnnjax Flax LSTM's parameters, named as in torch


@needs_mnist
def test_tiny_preset_trains_through_the_shared_trainer(tmp_path):
    config = moving_digits.get_config("tiny")
    config.data.dir = str(MNIST)
    config_cli.validate(config)
    data = frames.load_data(config, str(tmp_path))
    assert len(data.train_digits) == 10_000 - 32 and data.valid_digits.shape == (32, 7, 7)
    a, b = frames.train_batch(config, data, 3), frames.train_batch(config, data, 3)
    assert all(np.array_equal(a[k], b[k]) for k in a)  # a pure function of (seed, step)
    assert not np.array_equal(a["frames"], frames.train_batch(config, data, 4)["frames"])
    assert a["frames"].shape == (8, 4, 14, 14) and a["frames"].max() <= 1.0
    final = train.train_and_evaluate(config, str(tmp_path))
    saved = json.loads((tmp_path / "final_eval.json").read_text())
    assert saved["examples"] == 32 and saved["step"] == 6
    assert {"accuracy", "digit_accuracy", "direction_accuracy", "loss"} <= set(final)
    assert 0 < final["loss"] < 10
