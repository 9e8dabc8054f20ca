"""End-to-end tests of the absl trainer: hello, kill/resume, SIGTERM, overrides, clear errors."""

import gzip
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import plot, train
from experiments.configs import hello

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = "--config=experiments/configs/char_lm.py:tiny"
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}


def _command(workdir, *overrides):
    """The trainer on the tiny char-LM preset, unless an override names another ``--config``."""
    config = [] if any(o.startswith("--config=") for o in overrides) else [TINY]
    return [sys.executable, "-m", "experiments.train", *config, f"--workdir={workdir}", *overrides]


def _pinned(cpu):
    """preexec_fn pinning the child to one core: XLA:CPU then runs one intra-op thread.

    With several threads a compiled XLA:CPU program is not bitwise reproducible from call to call
    (https://github.com/jax-ml/jax/issues/39741), so two runs, interrupted or not, can differ in
    the last bits; at one thread they are identical.
    """
    return None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))


def _start(command, cpu=None):
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_pinned(cpu),
    )


def _run(command, timeout=180, cpu=None):
    return subprocess.run(
        command,
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_pinned(cpu),
    )


def _checkpoint_steps(workdir):
    directory = pathlib.Path(workdir) / "checkpoints"
    if not directory.exists():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _restore(workdir, step):
    path = pathlib.Path(workdir) / "checkpoints" / str(step) / "default"
    return ocp.StandardCheckpointer().restore(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "corpus.txt"
    rng = np.random.default_rng(0)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "and", "cat"]
    path.write_text(" ".join(rng.choice(words, size=3000)) + "\n", encoding="utf-8")
    return str(path)


def test_hello_reaches_full_accuracy(tmp_path):
    final = train.train_and_evaluate(hello.get_config(), str(tmp_path))
    assert final["accuracy"] == 1.0
    assert final["tokens"] == 4  # h->e, e->l, l->l, l->o


@pytest.fixture(scope="module")
def sentences(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sentences")
    rng = np.random.default_rng(0)
    words = ["good", "bad", "plot", "film", "the", "a", "fine", "dull"]
    rows = [f"{' '.join(rng.choice(words, size=rng.integers(0, 14)))}\t{i % 2}" for i in range(300)]
    for name in ("train.tsv", "dev.tsv"):
        (folder / name).write_text("sentence\tlabel\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return str(folder)


@pytest.mark.parametrize("task", ["char_lm", "classify"])
def test_kill_and_resume_ends_bitwise_identical(tmp_path, corpus, sentences, task):
    overrides = [
        "--config.num_steps=200",
        "--config.checkpoint_every=50",
        "--config.log_every=50",
        "--config.eval_every=100000",
        "--config.model.dropout=0.1",
    ]
    if task == "char_lm":
        overrides = [TINY, f"--config.data.path={corpus}", *overrides]
    else:
        overrides = [
            "--config=experiments/configs/sst2.py:tiny",
            f"--config.data.dir={sentences}",
            "--config.data.train_file=train.tsv",
            *overrides,
        ]
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    cpus = sorted(os.sched_getaffinity(0))
    reference_run = _start(_command(reference, *overrides), cpu=cpus[0])
    killed = _start(_command(interrupted, *overrides), cpu=cpus[-1])
    deadline = time.monotonic() + 180
    while not _checkpoint_steps(interrupted) and time.monotonic() < deadline:
        assert killed.poll() is None, killed.communicate()
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    assert reference_run.wait(timeout=180) == 0, reference_run.communicate()
    saved = _checkpoint_steps(interrupted)
    assert saved and saved[-1] < 200

    resumed = _run(_command(interrupted, *overrides), cpu=cpus[-1])
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {saved[-1]}" in resumed.stdout
    expected, actual = _restore(reference, 200), _restore(interrupted, 200)
    assert int(actual["step"]) == 200
    differ = [
        jax.tree_util.keystr(path)
        for (path, a), b in zip(
            jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected), strict=True
        )
        if not np.array_equal(a, b)
    ]
    assert not differ, (differ, resumed.stdout[-3000:])  # bitwise: params, optimizer, carry


def test_sigterm_saves_a_checkpoint_and_exits(tmp_path, corpus):
    overrides = [
        f"--config.data.path={corpus}",
        "--config.num_steps=1000000",
        "--config.checkpoint_every=1000000",
        "--config.eval_every=1000000",
        "--config.log_every=10",
    ]
    process = _start(_command(tmp_path, *overrides))
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while not (metrics.exists() and metrics.stat().st_size) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    saved = _checkpoint_steps(tmp_path)
    assert len(saved) == 1 and saved[0] >= 10
    assert f"SIGTERM at step {saved[0]}: checkpoint saved" in stdout + stderr


def test_overrides_change_the_model(tmp_path, corpus):
    result = _run(
        _command(
            tmp_path,
            f"--config.data.path={corpus}",
            "--config.num_steps=2",
            "--config.warmup_steps=0",
            "--config.model.cell=gru",
            "--config.model.num_layers=2",
            "--config.model.precision=bfloat16",
            "--config.data.tbptt=false",
        )
    )
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"]["cell"] == "gru" and config["model"]["num_layers"] == 2
    assert config["model"]["precision"] == "bfloat16"
    params = _restore(tmp_path, 2)["params"]
    assert len(params["rnn"]) == 2
    assert params["rnn"][0]["w_ih"].shape == (8, 3 * 16)  # 3 gates of 16 units: a GRU
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in records} == {"train", "eval"}
    assert all({"step", "split", "loss"} <= set(r) for r in records)


def test_bad_commands_fail_with_one_clear_line(tmp_path, corpus):
    # One command per way an error reaches the user (absl's flag parsing, the override check,
    # loading a config file, the config's validation, reading the data): exit status 2 and one
    # line. The other messages of each kind are checked in process (the next test): they leave
    # by the same handler.
    missing = tmp_path / "missing.txt"
    cases = {
        "Unknown config field 'model.hiden_size'; did you mean 'model.hidden_size'?": [
            "--config.model.hiden_size=3"
        ],
        "Bad config value: flag --config.num_steps=abc": ["--config.num_steps=abc"],
        "unknown char_lm preset 'nope'": ["--config=experiments/configs/char_lm.py:nope"],
        "config.model.cell must be one of ['rnn', 'lstm', 'gru', 'mingru', 'minlstm', 'lru'], "
        "got 'transformer'": ["--config.model.cell=transformer"],
        f"data file not found: '{missing}'": [f"--config.data.path={missing}"],
    }
    processes = {
        message: _start(_command(tmp_path / str(i), *args))
        for i, (message, args) in enumerate(cases.items())
    }
    for message, process in processes.items():
        stdout, stderr = process.communicate(timeout=180)
        assert process.returncode == 2, (message, stderr[-2000:])
        assert message in stderr, (message, stderr[-2000:])
        assert "Traceback" not in stderr, stderr
        assert len(stderr.strip().splitlines()) == 1, stderr


def test_bad_configs_and_data_files_raise_what_the_command_prints(tmp_path):
    from experiments import config_cli
    from experiments.configs import char_lm
    from rnnjax import data

    with pytest.raises(config_cli.ConfigError, match="Unknown config field 'num_step'; did you"):
        config_cli.check_overrides([TINY, "--config.num_step=3"])
    for field, value, message in [
        ("model.dropout", 1.5, "config.model.dropout must be in [0, 1), got 1.5"),
        ("batch_size", 0, "config.batch_size must be a positive integer, got 0"),
        (
            "model.precision",
            "float16",
            "config.model.precision must be one of ['float32', 'bfloat16'], got 'float16'",
        ),
        (
            "model.cell",
            "mingru",
            "config.model.precision='bfloat16' needs model.kind='rnn' and model.cell in ('rnn', "
            "'lstm', 'gru'), got kind='rnn', cell='mingru'",
        ),
    ]:
        config = char_lm.get_config("tiny")
        config.model.precision = "bfloat16" if field == "model.cell" else "float32"
        config.update_from_flattened_dict({field: value})
        with pytest.raises(config_cli.ConfigError, match=re.escape(message)):
            config_cli.validate(config)
    fake_gz = tmp_path / "fake.txt.gz"
    fake_gz.write_bytes(b"not gzip at all")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 ".encode("latin-1") * 100)
    short = tmp_path / "short.txt.gz"
    with gzip.open(short, "wt") as f:
        f.write("too short")
    for path, message in [
        (fake_gz, "cannot read data file"),
        (latin, "is not UTF-8 text"),
        (short, "fewer than the 17 needed"),
    ]:
        config = char_lm.get_config("tiny")
        config.data.path = str(path)
        config_cli.validate(config)
        with pytest.raises(data.DataError, match=message):
            train.train_and_evaluate(config, str(tmp_path / f"{path.name}.run"))


def test_plot_draws_learning_curves_of_several_runs(tmp_path):
    for name, scale in (("a", 1.0), ("b", 2.0)):
        workdir = tmp_path / name
        workdir.mkdir()
        lines = [{"step": s, "split": "train", "loss": scale / s} for s in range(1, 20)]
        lines += [{"step": s, "split": "eval", "loss": scale / s} for s in (5, 10, 10, 15)]
        (workdir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    assert plot.read_metrics(str(tmp_path / "a"))["eval"][0] == [5, 10, 15]
    out = plot.plot_runs([str(tmp_path / "a"), str(tmp_path / "b")], str(tmp_path / "c.png"))
    assert pathlib.Path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "b" / "metrics.jsonl").write_text(json.dumps(lines[-1]) + "\n")  # step 15 only
    table = plot.eval_table([str(tmp_path / "a"), str(tmp_path / "b")]).splitlines()
    assert table == [
        "| step | a | b |",
        "|---|---|---|",
        "| 5 | 0.2000 | - |",
        "| 10 | 0.1000 | - |",
        "| 15 | 0.0667 | 0.1333 |",
    ]
