"""Tests of rnnjax.data: reading, splitting, and batches as pure functions of (seed, step)."""

import gzip

import numpy as np
import pytest

from rnnjax import data


def test_read_text_plain_and_gzip(tmp_path):
    (tmp_path / "a.txt").write_text("héllo\n", encoding="utf-8")
    with gzip.open(tmp_path / "a.txt.gz", "wt", encoding="utf-8") as f:
        f.write("héllo\n")
    assert data.read_text(str(tmp_path / "a.txt")) == "héllo\n"
    assert data.read_text(str(tmp_path / "a.txt.gz")) == "héllo\n"


def test_read_text_errors_name_the_problem(tmp_path):
    with pytest.raises(data.CorpusError, match="not found"):
        data.read_text(str(tmp_path / "missing.txt"))
    (tmp_path / "fake.gz").write_bytes(b"plain text, not gzip")
    with pytest.raises(data.CorpusError, match="cannot read"):
        data.read_text(str(tmp_path / "fake.gz"))
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(data.CorpusError, match="not UTF-8"):
        data.read_text(str(tmp_path / "latin1.txt"))


def test_load_corpus_splits_first_part_train_last_part_valid():
    corpus = data.load_corpus("abcdefghij" * 10, 0.1, min_chars=5)
    assert corpus.vocab == "abcdefghij"
    assert len(corpus.train) == 90 and len(corpus.valid) == 10
    assert corpus.decode(corpus.valid) == "abcdefghij"
    with pytest.raises(data.CorpusError, match="validation split has 10 characters"):
        data.load_corpus("abcdefghij" * 10, 0.1, min_chars=20)
    with pytest.raises(data.CorpusError, match="fewer than"):
        data.load_corpus("", 0.1)
    with pytest.raises(data.CorpusError, match="not in the vocabulary"):
        data.load_corpus("xyz", 0.0, vocab="xy")


def test_stdlib_text_is_real_and_deterministic():
    text = data.stdlib_text(50_000)
    assert len(text) == 50_000 and "def " in text
    assert data.stdlib_text(50_000) == text


def test_random_windows_are_a_pure_function_of_seed_and_step():
    tokens = np.arange(1000, dtype=np.int32)
    x, y = data.random_windows(tokens, 0, 5, 4, 16)
    x2, y2 = data.random_windows(tokens, 0, 5, 4, 16)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, x + 1)  # the target is the next token
    assert not np.array_equal(x, data.random_windows(tokens, 0, 6, 4, 16)[0])
    assert not np.array_equal(x, data.random_windows(tokens, 1, 5, 4, 16)[0])


def test_stream_windows_continue_each_stream_and_reset_per_pass():
    tokens = np.arange(1000, dtype=np.int32)
    batch, seq_len = 4, 10
    windows_per_pass = ((1000 - seq_len - 1) // batch) // seq_len
    x0, y0, reset0 = data.stream_windows(tokens, 3, 0, batch, seq_len)
    x1, _, reset1 = data.stream_windows(tokens, 3, 1, batch, seq_len)
    assert reset0 and not reset1
    np.testing.assert_array_equal(y0, x0 + 1)
    np.testing.assert_array_equal(x1[:, 0], x0[:, -1] + 1)  # window k+1 follows window k
    *_, reset = data.stream_windows(tokens, 3, windows_per_pass, batch, seq_len)
    assert reset
    for step in range(3 * windows_per_pass):  # in range on every pass
        x, y, _ = data.stream_windows(tokens, 3, step, batch, seq_len)
        assert y.max() < 1000


def test_eval_windows_cover_every_target_once_with_a_mask():
    tokens = np.arange(1, 104, dtype=np.int32)  # 102 targets
    seen = []
    for inputs, targets, mask in data.eval_windows(tokens, 4, 8):
        assert inputs.shape == targets.shape == mask.shape == (4, 8)
        np.testing.assert_array_equal(targets[mask == 1], inputs[mask == 1] + 1)
        seen.extend(targets[mask == 1].tolist())
    assert sorted(seen) == list(range(2, 104))
