"""The translate task end to end on a small synthetic language: the tiny preset trains through
the shared trainer and learns, the test split and its translations land in the workdir, batches
are pure functions of (seed, step), and ``experiments.translate`` handles bad input in one line."""

import gzip
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

import rnnjax
from experiments import config_cli, train, translate
from experiments.configs import translate as translate_config
from experiments.tasks import translate as task
from tests.test_experiments import ENV, ROOT

EN = ["red", "blue", "green", "big", "small", "old", "new", "fast"]
FR = ["rouge", "bleu", "vert", "grand", "petit", "vieux", "neuf", "rapide"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """'I am A and B.' -> 'Je suis A' et B'.' for every pair of words: 56 sources, plus noise."""
    lines = ["Go.\tVa !", "I am here because it is a very long sentence.\tJe suis ici."]
    for (i, a), (j, b) in itertools.permutations(enumerate(EN), 2):
        lines.append(f"I am {a} and {b}.\tJe suis {FR[i]} et {FR[j]}.")
        if i == 0:  # a second reference for some sources
            lines.append(f"I am {a} and {b}.\tJe suis {FR[i]} et aussi {FR[j]}.")
    path = tmp_path_factory.mktemp("pairs") / "pairs.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


def _config(path, **overrides):
    config = translate_config.get_config("tiny")
    config.data.path = path
    for key, value in overrides.items():
        target = config
        *parents, name = key.split(".")
        for parent in parents:
            target = target[parent]
        target[name] = value
    return config


@pytest.fixture(scope="module")
def trained(pairs, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    config = _config(pairs, num_steps=150, eval_every=1000, checkpoint_every=1000,
                     learning_rate=0.01, **{"model.hidden_size": 32})  # fmt: skip
    return str(workdir), train.train_and_evaluate(config, str(workdir))


def test_tiny_preset_learns_and_writes_the_test_split(trained):
    workdir, final = trained
    assert final["test_greedy_bleu"] > 50 and final["test_beam3_bleu"] > 50, final
    assert 0 <= final["test_greedy_exact_match"] <= 1 and final["accuracy"] > 0.5
    saved = json.loads(open(f"{workdir}/final_eval.json").read())
    assert saved["test_beam3_bleu"] == final["test_beam3_bleu"]
    split = open(f"{workdir}/test_split.tsv").read().splitlines()
    greedy = open(f"{workdir}/test_greedy.txt").read().splitlines()
    assert len(split) == len(greedy) == 5  # 56 sources: 45 train, 6 valid, 5 test
    assert all(line.startswith("i am ") and "\tje suis " in line for line in split)


def test_batches_are_pure_functions_of_seed_and_step(pairs, tmp_path):
    config = _config(pairs)
    d = task.load_data(config, str(tmp_path))
    n = len(d.train["src"])
    steps = -(-n // config.batch_size)  # one epoch
    batches = [task.train_batch(config, d, s) for s in range(steps)]
    again = task.train_batch(config, d, 3)
    assert all(np.array_equal(batches[3][k], again[k]) for k in again)
    rows = np.concatenate([b["src"] for b in batches])[:n]
    assert len({r.tobytes() for r in rows}) == len({r.tobytes() for r in d.train["src"]})
    assert batches[0]["tgt_in"][0, 0] == d.target_vocab.bos_id
    config.scheduled_sampling.kind, config.scheduled_sampling.k = "inverse_sigmoid", 10.0
    sampled = task.train_batch(config, d, 50)["teacher_prob"]
    np.testing.assert_allclose(sampled, 10 / (10 + np.exp(5.0)), rtol=1e-5)


def test_translate_command_and_its_documented_input_handling(trained, tmp_path, capsys):
    workdir, _ = trained
    source = tmp_path / "in.txt"
    long_line = "I am red and blue and green and big and small and old."
    source.write_text(f"I am red and blue.\n\n{long_line}\nI am purple and blue!\n")
    out = tmp_path / "out.txt"
    run = translate.load_run(workdir)  # (config, model, params, data), as the command loads it
    line = translate.translate_file(*run, str(source), str(out), 3)
    lines = out.read_text().splitlines()
    assert len(lines) == 4 and lines[1] == ""  # an empty line stays empty, aligned
    assert lines[0] == "je suis rouge et bleu"
    assert "translated 3 of 4 lines (1 empty) with beam 3, 2 unknown words" in line  # purple, !
    assert "line 3: 13 words, the model reads at most 9" in capsys.readouterr().err
    png = tmp_path / "attention.png"
    assert "heatmaps of 2 sentences" in translate.heatmap(*run, workdir, None, str(png), 2)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(config_cli.ConfigError, match=r"beam_size must be in \[1, \d+\]"):
        translate.translate_file(*run, str(source), str(out), 0)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"task": "classify"}))
    with pytest.raises(config_cli.ConfigError, match="is a 'classify' model, not a translation"):
        translate.load_run(str(other))
    command = [sys.executable, "-m", "experiments.translate", f"--workdir={workdir}",
               "--input=-", "--beam_size=100000"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=ENV, input="I am red.\n", text=True,
                            capture_output=True, timeout=180)  # fmt: skip
    assert result.returncode == 2 and result.stderr.startswith("error: beam_size must be in")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_bfloat16_rounds_the_encoder_and_decoder_cells_and_trains(pairs, tmp_path):
    config = _config(pairs, num_steps=4, eval_every=1000, checkpoint_every=1000,
                     **{"model.precision": "bfloat16"})  # fmt: skip
    model = task.build_model(config, task.load_data(config, str(tmp_path)))
    for cell in (model.encoder.layer.cell, model.decoder.cell):
        assert isinstance(cell, rnnjax.cells.MixedPrecisionCell), cell
    final = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert np.isfinite(final["loss"]), final


def test_bad_config_is_one_line(pairs):
    with pytest.raises(config_cli.ConfigError, match="config.model.attention must be one of"):
        config_cli.validate(_config(pairs, **{"model.attention": "luong-dot"}))
    with pytest.raises(config_cli.ConfigError, match=r"config.model.precision must be one of \["):
        config_cli.validate(_config(pairs, **{"model.precision": "fp8"}))
    with pytest.raises(config_cli.ConfigError, match="set config.data.path"):
        config_cli.validate(_config(""))
    with pytest.raises(config_cli.ConfigError, match="scheduled_sampling: k of the exponential"):
        config_cli.validate(_config(pairs, **{"scheduled_sampling.kind": "exponential",
                                              "scheduled_sampling.k": 2.0}))  # fmt: skip
