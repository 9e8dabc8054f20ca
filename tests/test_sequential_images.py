"""Images as sequences: the IDX and digits-CSV readers against NumPy, the row / pixel / permuted
orders, the fixed split, one-line errors for bad files, and the ``tiny`` preset through the
trainer."""

import gzip
import json
import pathlib
import re

import numpy as np
import pytest

from experiments import train
from experiments.config_cli import ConfigError
from experiments.configs import sequential_mnist
from experiments.tasks import sequential_images
from rnnjax import data

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def _idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """An IDX file written by hand: magic (0, 0, type, ndim), big-endian sizes, the values."""
    header = bytes([0, 0, type_code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def _write_mnist(folder: pathlib.Path, images: np.ndarray, labels: np.ndarray, gz=True):
    opener = gzip.open if gz else open
    with opener(folder / "images.idx", "wb") as f:
        f.write(_idx_bytes(images.astype(np.uint8)))
    with opener(folder / "labels.idx", "wb") as f:
        f.write(_idx_bytes(labels.astype(np.uint8)))
    return str(folder / "images.idx"), str(folder / "labels.idx")


@pytest.mark.parametrize("gz", [True, False])
def test_read_mnist_matches_numpy(tmp_path, gz):
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (5, 3, 4)), rng.integers(0, 10, 5)
    got = data.read_mnist(*_write_mnist(tmp_path, images, labels, gz))
    np.testing.assert_array_equal(got.images, (images / 255.0).astype(np.float32))
    np.testing.assert_array_equal(got.labels, labels)
    assert got.images.dtype == np.float32 and got.images.max() <= 1.0


def test_read_idx_other_types_are_big_endian():
    values = np.arange(-3, 3, dtype=np.int32).reshape(2, 3) * 1000
    path = pathlib.Path(pytest.importorskip("tempfile").mkdtemp()) / "ints.idx"
    path.write_bytes(_idx_bytes(values, 0x0C))
    got = data.read_idx(str(path))
    assert got.dtype == np.int32 and got.dtype.isnative
    np.testing.assert_array_equal(got, values)


def _reference_sequence(images, order, permutation=None):
    """A loop over (image, step, feature), independent of the reshapes under test."""
    n, h, w = images.shape
    steps, features = (h, w) if order == "rows" else (h * w, 1)
    out = np.zeros((n, steps, features), np.float32)
    for i in range(n):
        for t in range(steps):
            source = t if permutation is None else permutation[t]
            for f in range(features):
                pixel = source * w + f if order == "rows" else source
                out[i, t, f] = images[i, pixel // w, pixel % w]
    return out


@pytest.mark.parametrize("order", data.ORDERS)
@pytest.mark.parametrize("permuted", [False, True])
def test_orders_match_a_reference_loop(order, permuted):
    images = np.random.default_rng(1).random((2, 3, 4)).astype(np.float32)
    steps = 3 if order == "rows" else 12
    permutation = data.pixel_permutation(steps, 7) if permuted else None
    got = data.image_sequences(images, order, permutation)
    np.testing.assert_array_equal(got, _reference_sequence(images, order, permutation))
    # Row order is the image itself; pixel order reads rows left to right, top to bottom.
    if not permuted:
        expected = images if order == "rows" else images.reshape(2, 12, 1)
        np.testing.assert_array_equal(got, expected)


def test_the_permutation_is_fixed_by_its_seed():
    first = data.pixel_permutation(784, 0)
    assert sorted(first.tolist()) == list(range(784))
    np.testing.assert_array_equal(first, data.pixel_permutation(784, 0))
    assert not np.array_equal(first, data.pixel_permutation(784, 1))
    with pytest.raises(ValueError, match="permutation must reorder the 12 steps"):
        data.image_sequences(np.zeros((1, 3, 4)), "pixels", np.arange(11))


def test_holdout_split_and_shifts():
    images = data.LabelledImages(np.arange(12 * 4, dtype=np.float32).reshape(12, 2, 2),
                                 np.arange(12, dtype=np.int32))  # fmt: skip
    train_part, held = data.holdout_split(images, 5)
    assert held.labels.tolist() == [4, 9] and len(train_part) == 10
    assert 4 not in train_part.labels.tolist()
    picture = np.arange(1, 13, dtype=np.float32).reshape(1, 3, 4)
    shifted = data.shift_images(np.repeat(picture, 3, 0), np.array([[0, 0], [1, -2], [-1, 1]]))
    np.testing.assert_array_equal(shifted[0], picture[0])
    reference = np.zeros((2, 3, 4), np.float32)
    for k, (down, right) in enumerate([(1, -2), (-1, 1)]):
        for y in range(3):
            for x in range(4):
                if 0 <= y - down < 3 and 0 <= x - right < 4:
                    reference[k, y, x] = picture[0, y - down, x - right]
    np.testing.assert_array_equal(shifted[1:], reference)


def _bad_idx_cases(tmp_path):
    good = _idx_bytes(np.zeros((2, 3, 3), np.uint8))
    return {
        "bad magic number 0x08030000": good[2:4] + good[:2] + good[4:],
        "is truncated: its header says 2x3x3 values of 1 byte(s) (18 bytes), the file holds 17":
            good[:-1],
        "has extra bytes": good + b"\0",
        "is truncated: 10 bytes, its header of 3 dimensions needs 16": good[:10],
        "is truncated: 2 bytes, the magic number needs 4": good[:2],
    }  # fmt: skip


def test_bad_idx_files_raise_one_clear_line(tmp_path):
    for i, (message, content) in enumerate(_bad_idx_cases(tmp_path).items()):
        path = tmp_path / f"bad{i}.idx"
        path.write_bytes(content)
        with pytest.raises(data.DataError, match=re.escape(message)):
            data.read_idx(str(path))
    (tmp_path / "cut.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros(5, np.uint8)))[:-6])
    with pytest.raises(data.DataError, match="cannot read data file"):
        data.read_idx(str(tmp_path / "cut.gz"))
    with pytest.raises(data.DataError, match="data file not found"):
        data.read_idx(str(tmp_path / "missing.idx"))
    paths = _write_mnist(tmp_path, np.zeros((3, 2, 2)), np.zeros(2))
    with pytest.raises(data.DataError, match="label count mismatch: 3 images in .*, 2 labels"):
        data.read_mnist(*paths)
    with pytest.raises(data.DataError, match=r"expected \[count, rows, cols\] uint8"):
        data.read_mnist(paths[1], paths[1])


def test_digits_csv_reader_and_its_errors(tmp_path):
    rng = np.random.default_rng(2)
    table = np.concatenate([rng.integers(0, 17, (4, 64)), rng.integers(0, 10, (4, 1))], 1)
    path = tmp_path / "digits.csv.gz"
    path.write_bytes(gzip.compress("".join(",".join(map(str, r)) + "\n" for r in table).encode()))
    got = data.read_digits_csv(str(path))
    np.testing.assert_array_equal(got.images, (table[:, :64] / 16.0).reshape(4, 8, 8))
    np.testing.assert_array_equal(got.labels, table[:, 64])
    row = ",".join(["0"] * 64)
    cases = {
        "line 2: 64 values, expected 65 (8x8 pixels and a label)": f"{row},1\n{row}\n",
        "line 1: 'x' is not an integer": f"{row[:-1]}x,1\n",
        "line 1: pixel values must be in [0, 16], found 17": f"17,{row[2:]},3\n",
        "has no rows": "\n",
    }
    for i, (message, text) in enumerate(cases.items()):
        (tmp_path / f"bad{i}.csv").write_text(text)
        with pytest.raises(data.DataError, match=re.escape(message)):
            data.read_digits_csv(str(tmp_path / f"bad{i}.csv"))


@pytest.mark.skipif(not (SHARED / "mnist-test").is_dir(), reason="no shared MNIST copy")
def test_the_shared_files_match_their_readme():
    mnist = data.read_mnist(str(SHARED / "mnist-test" / "t10k-images-idx3-ubyte.gz"),
                            str(SHARED / "mnist-test" / "t10k-labels-idx1-ubyte.gz"))  # fmt: skip
    assert mnist.images.shape == (10000, 28, 28)
    counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(mnist.labels).tolist() == counts
    train_part, held = data.holdout_split(mnist)
    assert (len(train_part), len(held)) == (8000, 2000)
    digits = data.read_digits_csv(str(SHARED / "digits" / "digits.csv.gz"))
    assert digits.images.shape == (1797, 8, 8) and digits.images.max() == 1.0
    counts = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert np.bincount(digits.labels).tolist() == counts


def _learnable_mnist(folder: pathlib.Path, count: int):
    """Two classes of 6x6 images: a bright stroke in the top half (0) or the bottom half (1)."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, count)
    images = rng.integers(0, 60, (count, 6, 6))
    for i, label in enumerate(labels):
        images[i, 3 * label + rng.integers(0, 3), 1:5] = 255
    return _write_mnist(folder, images, labels)


def _config(images_path, labels_path, **changes):
    config = sequential_mnist.get_config("tiny")
    config.data.source = "mnist"
    config.data.mnist_dir = str(pathlib.Path(images_path).parent)
    config.data.mnist_images = pathlib.Path(images_path).name
    config.data.mnist_labels = pathlib.Path(labels_path).name
    for path, value in changes.items():
        *parents, name = path.split(".")
        target = config
        for parent in parents:
            target = target[parent]
        target[name] = value
    return config


def test_train_batches_are_pure_and_shift_only_when_asked(tmp_path):
    config = _config(*_learnable_mnist(tmp_path, 40), **{"data.order": "pixels",
                     "data.permute": True, "data.max_shift": 0})  # fmt: skip
    d = sequential_images.load_data(config, str(tmp_path))
    assert (len(d.train), len(d.held_out)) == (32, 8)
    first = sequential_images.train_batch(config, d, 3)
    again = sequential_images.train_batch(config, d, 3)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert first["inputs"].shape == (16, 36, 1)
    # Without shifts, every batch row is a training image in the permuted pixel order.
    sequences = data.image_sequences(d.train.images, "pixels", d.permutation)
    for row, label in zip(first["inputs"], first["labels"], strict=True):
        matches = np.flatnonzero((sequences == row).all(axis=(1, 2)))
        assert len(matches) and d.train.labels[matches[0]] == label
    epoch = np.concatenate([sequential_images.train_batch(config, d, s)["labels"] for s in (0, 1)])
    assert sorted(epoch.tolist()) == sorted(d.train.labels.tolist())  # steps 0-1: one epoch


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_tiny_preset_learns_through_the_trainer(tmp_path, precision):
    images_path, labels_path = _learnable_mnist(tmp_path, 300)
    config = _config(images_path, labels_path, num_steps=60, eval_every=1000,
                     checkpoint_every=1000, learning_rate=0.02)  # fmt: skip
    config.model.precision = precision
    final = train.train_and_evaluate(config, str(tmp_path / "run"))
    saved = json.loads((tmp_path / "run" / "final_eval.json").read_text())
    assert saved["accuracy"] == final["accuracy"] >= 0.95, final
    assert saved["examples"] == 60 and saved["step"] == 60


def test_config_errors_name_the_field():
    config = sequential_mnist.get_config("tiny")
    config.model.cell = "gru"
    config.model.forget_bias = 1.0
    with pytest.raises(ConfigError, match="config.model.forget_bias is for cell='lstm'"):
        sequential_images.validate(config)
    config = sequential_mnist.get_config("tiny")
    config.data.order = "columns"
    with pytest.raises(ConfigError, match=r"config.data.order must be one of \['rows', 'pixels'\]"):
        sequential_images.validate(config)
    with pytest.raises(ValueError, match="unknown sequential_mnist preset 'big'"):
        sequential_mnist.get_config("big")
