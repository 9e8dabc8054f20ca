"""The classification task: TSV reading, vocabulary, bucketed batches as pure functions of
(seed, step), training through the shared trainer, predict, and one-line errors for bad input."""

import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import predict, train
from experiments.configs import sst2
from rnnjax import data, training

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}
GOOD = ["great", "fine", "lovely", "superb"]
BAD = ["awful", "dull", "boring", "poor"]
FILLER = ["the", "movie", "plot", "was", "and", "a", "film", "story"]


def _write_tsv(path, rows, header="sentence\tlabel"):
    path.write_text(header + "\n" + "".join(f"{s} \t{y}\n" for s, y in rows), encoding="utf-8")
    return str(path)


def _sentiment_rows(count, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        label = int(rng.integers(2))
        words = list(rng.choice(FILLER, size=rng.integers(1, 12)))
        words.insert(int(rng.integers(len(words) + 1)), rng.choice(GOOD if label else BAD))
        rows.append((" ".join(words), label))
    return rows


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sentiment")
    _write_tsv(folder / "train.tsv", _sentiment_rows(600, 0))
    _write_tsv(folder / "dev.tsv", _sentiment_rows(100, 1) + [("", 1), ("unseen words here", 0)])
    return folder


def _config(folder, **changes):
    config = sst2.get_config("tiny")
    config.data.dir = str(folder)
    config.data.train_file = "train.tsv"
    for path, value in changes.items():
        target = config
        *parents, name = path.split(".")
        for parent in parents:
            target = target[parent]
        target[name] = value
    return config


def test_read_tsv_and_vocabulary(tmp_path):
    path = _write_tsv(tmp_path / "a.tsv", [("Good  movie", 1), ("bad movie", 0), ("", 1)])
    texts, labels = data.read_tsv(path)
    assert texts == ["Good  movie", "bad movie", ""] and labels.tolist() == [1, 0, 1]
    vocab = data.build_vocab(texts)
    assert vocab == [data.PAD, data.UNK, "movie", "bad", "good"]  # by count, then alphabetically
    sequences = data.encode(["good film", ""], vocab)
    assert sequences.tokens.tolist() == [4, 1] and sequences.lengths.tolist() == [2, 0]
    only_text = _write_tsv(tmp_path / "b.tsv", [("x", "")], header="sentence")
    assert data.read_tsv(only_text)[1] is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text\tlabel\nhello\t1\n", "has no 'sentence' column (header: ['text', 'label'])"),
        ("sentence\tlabel\nhello\tpositive\n", "line 2: label 'positive' is not an integer"),
        ("", "is empty: expected a header line with a 'sentence' column"),
    ],
)
def test_malformed_files_raise_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(data.DataError, match=re.escape(message)):
        data.read_tsv(str(path))


def test_bucketed_batches_are_pure_cover_each_epoch_and_bound_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 30, size=203)
    texts = [" ".join(["w"] * n) for n in lengths]
    sequences = data.encode(texts, data.build_vocab(texts), np.zeros(len(texts), np.int32))
    boundaries, batch_size = (5, 10, 20, 40), 8
    plan_length = sum(-(-np.sum(data.bucket_of(lengths, boundaries) == b) // batch_size)
                      for b in range(len(boundaries)))  # fmt: skip
    seen = []
    for step in range(plan_length):
        batch = data.bucketed_batch(sequences, boundaries, batch_size, 3, step)
        again = data.bucketed_batch(sequences, boundaries, batch_size, 3, step)
        assert all(np.array_equal(batch[k], again[k]) for k in batch)
        num_steps = batch["inputs"].shape[1]
        assert num_steps in boundaries and batch["lengths"].max() <= num_steps
        lower = ([0, *boundaries])[boundaries.index(num_steps)]
        assert num_steps == boundaries[0] or batch["lengths"].min() > lower  # bounded padding
        assert np.all((batch["inputs"] > 0) == (np.arange(num_steps) < batch["lengths"][:, None]))
        seen += list(batch["lengths"])
    assert sorted(set(np.asarray(seen).tolist())) == sorted(set(lengths.tolist()))
    assert len(seen) >= len(lengths) and len(seen) < len(lengths) + 4 * batch_size
    other = data.bucketed_batch(sequences, boundaries, batch_size, 3, plan_length)  # next epoch
    assert other["inputs"].shape[0] == batch_size


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_trains_predicts_and_reports_the_same_accuracy(tmp_path, sentiment, precision):
    config = _config(sentiment, num_steps=150, eval_every=1000, checkpoint_every=1000,
                     learning_rate=0.01, **{"model.hidden_size": 16,
                                            "model.precision": precision})  # fmt: skip
    final = train.train_and_evaluate(config, str(tmp_path))
    saved = json.loads((tmp_path / "final_eval.json").read_text())
    assert saved["accuracy"] == final["accuracy"] > 0.85, final
    assert saved["examples"] == 102
    line = predict.predict(str(tmp_path), str(sentiment / "dev.tsv"), str(tmp_path / "p.tsv"))
    assert line.startswith(f"accuracy {final['accuracy']:.4f} on 102 rows"), line
    rows = (tmp_path / "p.tsv").read_text().splitlines()
    assert rows[0] == "prediction\tprobability" and len(rows) == 103
    assert all(r.split("\t")[0] in ("0", "1") for r in rows[1:])  # the empty sentence included


def _train_command(workdir, *overrides):
    return [sys.executable, "-m", "experiments.train", "--config=experiments/configs/sst2.py:tiny",
            f"--workdir={workdir}", *overrides]  # fmt: skip


def test_bad_input_fails_with_one_clear_line(tmp_path, sentiment):
    # One command per way an error reaches the user (a data file, a config file, a config
    # value, a checkpoint of another model): exit status 2 and one line. The other data-file
    # messages leave by the same handler (the next test, and the reader's own tests above).
    words = _write_tsv(tmp_path / "words.tsv", [("a", "pos")])
    trained = tmp_path / "trained"
    base = [f"--config.data.dir={sentiment}", "--config.data.train_file=train.tsv"]
    assert subprocess.run(_train_command(trained, *base), cwd=ROOT, env=ENV,
                          capture_output=True).returncode == 0  # fmt: skip
    cases = {
        "label 'pos' is not an integer": [f"--config.data.train_path={words}"],
        "config file not found: 'experiments/no.py'": ["--config=experiments/no.py"],
        "was written by a different model: params.": [
            *base, "--config.model.hidden_size=32", f"--workdir={trained}"
        ],
        "config.model.pooling must be one of": [*base, "--config.model.pooling=sum"],
    }  # fmt: skip
    processes = {
        message: subprocess.Popen(
            _train_command(tmp_path / str(i), *args),
            cwd=ROOT,
            env=ENV,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for i, (message, args) in enumerate(cases.items())
    }
    for message, process in processes.items():
        _, stderr = process.communicate(timeout=180)
        assert process.returncode == 2, (message, stderr[-2000:])
        assert message in stderr and "Traceback" not in stderr, (message, stderr[-2000:])
        assert len(stderr.strip().splitlines()) == 1, stderr


def test_bad_training_files_raise_what_the_command_prints(tmp_path, sentiment):
    no_column = _write_tsv(tmp_path / "no_column.tsv", [("a", 1)], header="text\tlabel")
    empty = _write_tsv(tmp_path / "empty.tsv", [])
    for path, message in [(no_column, "has no 'sentence' column"),
                          (empty, "has no rows after its header")]:  # fmt: skip
        config = _config(sentiment, **{"data.train_path": path})
        with pytest.raises(data.DataError, match=message):
            train.train_and_evaluate(config, str(tmp_path / "run"))


def test_an_unreadable_latest_checkpoint_is_set_aside_and_the_previous_one_restored(tmp_path):
    optimizer = training.make_optimizer(optax.adam(1e-3), 1.0)
    state = training.create_train_state({"w": jnp.ones((2, 3))}, optimizer, jax.random.key(0))
    checkpointer = training.Checkpointer(str(tmp_path / "checkpoints"), 3)
    for step in (4, 8):
        checkpointer.save(
            state.replace(step=jnp.int32(step), params={"w": jnp.full((2, 3), float(step))})
        )
    (tmp_path / "checkpoints" / "8" / "default" / "_METADATA").write_text("{not json")
    restored = training.Checkpointer(str(tmp_path / "checkpoints"), 3).restore_latest(state)
    assert int(restored.step) == 4 and float(restored.params["w"][0, 0]) == 4.0
    assert (tmp_path / "checkpoints.unreadable" / "8").is_dir()
    with pytest.raises(
        training.CheckpointError, match=r"params.w is float32\[2, 3\] there and float32\[2, 5\]"
    ):
        other = training.create_train_state({"w": jnp.ones((2, 5))}, optimizer, jax.random.key(0))
        training.Checkpointer(str(tmp_path / "checkpoints"), 3).restore_latest(other)
