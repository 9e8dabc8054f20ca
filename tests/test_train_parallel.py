"""The trainer (experiments/train.py) data parallel: 2 processes x 2 fake CPU devices, and 1 x 4,
against the same config on one device in this process.

Tolerance as in test_multiprocess.py: the gradient's mean is summed in another order on several
devices (float32, ~1e-7 relative per step); losses must agree within 2e-5 relative.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from jax.sharding import AbstractMesh, AxisType

from experiments import config_cli, train
from experiments.configs import char_lm, sst2
from rnnjax import training
from tests._job_env import job_env, xla_flags_with_devices

ROOT = pathlib.Path(__file__).resolve().parents[1]
RTOL = 2e-5


# Few steps, a loss logged at each, no evaluation but the final one: the test pays for the
# compilations of one train step, one evaluation and the samples.
SHORT = {"num_steps": 6, "log_every": 1, "eval_every": 100}


def _short(config, **more):
    for name, value in {**SHORT, **more}.items():
        target, *path = name.split(".")
        (config[target] if path else config)[path[0] if path else target] = value
    return config


def _overrides(**fields) -> list:
    return [f"--config.{name}={value}" for name, value in {**SHORT, **fields}.items()]


def _train_losses(workdir) -> list:
    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r.get("split") == "train"]


def _run(command, *, devices, timeout=180):
    env = job_env(JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags_with_devices(devices))
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done


def _flags(config_path, overrides):
    return [sys.executable, "-m", "experiments.train", f"--config={config_path}", *overrides]


def _check_same_run(got_dir, want_dir):
    np.testing.assert_allclose(_train_losses(got_dir), _train_losses(want_dir), rtol=RTOL)
    got = json.loads((pathlib.Path(got_dir) / "final_eval.json").read_text())
    want = json.loads((pathlib.Path(want_dir) / "final_eval.json").read_text())
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=RTOL)
    assert got["step"] == want["step"]


@pytest.mark.skipif(sys.platform != "linux", reason="fake CPU devices and process groups")
def test_char_lm_on_two_processes_matches_one_device(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    train.train_and_evaluate(_short(char_lm.get_config("tiny")), str(one))
    launcher = [sys.executable, "-m", "launch.local", "-n", "2", "--cpu-devices", "2", "--"]
    config = "experiments/configs/char_lm.py:tiny"
    done = _run([*launcher, *_flags(config, [f"--workdir={two}", *_overrides()])], devices=1)
    assert "[0] " in done.stdout and "data parallel: 2 process(es), 4 device(s)" in done.stdout
    assert "global batch 4 = 1 per device" in done.stdout
    quiet = [line for line in done.stdout.splitlines() if line.startswith("[1] I")]
    assert not [line for line in quiet if "train.py" in line]  # process 0 tells the story
    _check_same_run(two, one)
    assert sorted(os.listdir(two)) == sorted(os.listdir(one))  # process 1 wrote no extra file


def _write_tsv(path, count, seed):
    rng = np.random.default_rng(seed)
    words = ["good", "bad", "plot", "film", "the", "a", "fine", "dull"]
    sentences = [" ".join(rng.choice(words, size=rng.integers(1, 14))) for _ in range(count)]
    rows = [f"{sentence}\t{i % 2}" for i, sentence in enumerate(sentences)]
    path.write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")


def test_classifier_on_four_devices_matches_one_device(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _write_tsv(data_dir / "train.tsv", 300, 0)
    _write_tsv(data_dir / "dev.tsv", 50, 1)
    config = sst2.get_config("tiny")
    fields = {"data.dir": str(data_dir), "data.train_file": "train.tsv", "data.buckets": (16,)}
    train.train_and_evaluate(_short(config, **fields), str(tmp_path / "one"))
    overrides = [f"--workdir={tmp_path / 'four'}", *_overrides(**fields)]
    done = _run(_flags("experiments/configs/sst2.py:tiny", overrides), devices=4)
    assert "4 device(s)" in done.stdout and "global batch 8 = 2 per device" in done.stdout
    _check_same_run(tmp_path / "four", tmp_path / "one")


def test_batch_size_must_divide_over_the_devices(tmp_path, monkeypatch):
    mesh = AbstractMesh((3,), (training.DATA_AXIS,), axis_types=(AxisType.Auto,))
    monkeypatch.setattr(train.training, "make_mesh", lambda: mesh)
    with pytest.raises(config_cli.ConfigError, match=r"config\.batch_size must be a positive "
                       r"multiple of the 3 devices .* got 4; use e\.g\. 3 or 6"):  # fmt: skip
        train.train_and_evaluate(char_lm.get_config("tiny"), str(tmp_path))
