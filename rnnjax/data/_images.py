"""Images read as sequences: the IDX (MNIST) and 8x8-digits CSV readers, a fixed held-out split,
and the row-by-row, pixel-by-pixel and permuted-pixel orders.

Shapes: N images, H rows, W columns; a sequence is ``[N, T, F]`` with T steps of F features
(rows: T = H, F = W; pixels: T = H * W, F = 1).
"""

import csv
import dataclasses
import gzip
import io
import os

import numpy as np

from rnnjax.data._errors import DataError

ORDERS = ("rows", "pixels")

# The IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"); big-endian.
_IDX_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclasses.dataclass(frozen=True, eq=False)
class LabelledImages:
    """N grey-scale images scaled to [0, 1] with their integer labels.

    Attributes:
      images: ``[N, H, W]`` float32 in [0, 1].
      labels: ``[N]`` int32.
    """

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> "LabelledImages":
        return LabelledImages(self.images[indices], self.labels[indices])


def _read_bytes(path: str) -> bytes:
    """The file's bytes, gunzipped when it starts with gzip's magic (whatever its name)."""
    if not os.path.isfile(path):
        raise DataError(f"data file not found: {path!r}")
    try:
        with open(path, "rb") as f:
            raw = f.read()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read data file {path!r}: {e}") from None


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (plain or gzip), the format of the MNIST distribution.

    Args:
      path: the file: a 4-byte magic number (two zero bytes, a type code, the number of
        dimensions d), d big-endian uint32 sizes, then the values in row-major order.

    Returns:
      An array of the header's shape and type (native byte order).

    Raises:
      DataError: missing or unreadable file, a bad magic number, a header or body shorter than
        the header says (truncated), or bytes left over after the body.
    """
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(
            f"IDX file {path!r} is truncated: {len(raw)} bytes, the magic number needs 4"
        )
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DataError(
            f"IDX file {path!r} has a bad magic number 0x{raw[:4].hex()}: expected 0x0000, a type "
            f"code ({', '.join(f'0x{t:02x}' for t in _IDX_TYPES)}) and a number of dimensions > 0"
        )
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"IDX file {path!r} is truncated: {len(raw)} bytes, its header of {ndim} dimensions "
            f"needs {header}"
        )
    shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", ndim, 4))
    body = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != body:
        problem = "is truncated" if len(raw) - header < body else "has extra bytes"
        raise DataError(
            f"IDX file {path!r} {problem}: its header says {'x'.join(map(str, shape))} values of "
            f"{dtype.itemsize} byte(s) ({body} bytes), the file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_mnist(images_path: str, labels_path: str) -> LabelledImages:
    """MNIST-format images (``idx3``, ``[N, H, W]`` uint8) and labels (``idx1``, ``[N]``).

    Returns:
      The images divided by 255 and the labels.

    Raises:
      DataError: as ``read_idx``, and images that are not 3-D uint8, labels that are not 1-D,
        or a label count that differs from the image count.
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"IDX images {images_path!r}: expected [count, rows, cols] uint8, got "
            f"{images.dtype}{list(images.shape)}"
        )
    if labels.ndim != 1:
        raise DataError(f"IDX labels {labels_path!r}: expected [count], got {list(labels.shape)}")
    if len(labels) != len(images):
        raise DataError(
            f"label count mismatch: {len(images)} images in {images_path!r}, {len(labels)} labels "
            f"in {labels_path!r}"
        )
    return LabelledImages(images.astype(np.float32) / 255.0, labels.astype(np.int32))


def read_digits_csv(path: str, *, side: int = 8, max_value: int = 16) -> LabelledImages:
    """The UCI / scikit-learn digits CSV (plain or gzip): per line ``side**2`` pixels, row-major,
    then the label; no header.

    Returns:
      The images ``[N, side, side]`` divided by ``max_value`` and the labels.

    Raises:
      DataError: missing, unreadable or empty file; a line of the wrong width, a value that is
        not an integer, a pixel outside ``[0, max_value]`` or a negative label (with its line).
    """
    try:
        text = _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"cannot read data file {path!r}: {e}") from None
    width = side * side + 1
    rows = []
    for number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields:
            continue
        if len(fields) != width:
            raise DataError(
                f"{path!r} line {number}: {len(fields)} values, expected {width} "
                f"({side}x{side} pixels and a label)"
            )
        try:
            rows.append([int(v) for v in fields])
        except ValueError:
            bad = next(v for v in fields if not v.strip().lstrip("-").isdigit())
            raise DataError(f"{path!r} line {number}: {bad!r} is not an integer") from None
        pixels = rows[-1][:-1]
        if min(pixels) < 0 or max(pixels) > max_value:
            raise DataError(
                f"{path!r} line {number}: pixel values must be in [0, {max_value}], found "
                f"{min(pixels) if min(pixels) < 0 else max(pixels)}"
            )
        if rows[-1][-1] < 0:
            raise DataError(f"{path!r} line {number}: negative label {rows[-1][-1]}")
    if not rows:
        raise DataError(f"{path!r} has no rows: expected {width} comma-separated integers a line")
    table = np.asarray(rows, np.int64)
    images = table[:, :-1].reshape(-1, side, side).astype(np.float32) / float(max_value)
    return LabelledImages(images, table[:, -1].astype(np.int32))


def holdout_split(images: LabelledImages, every: int = 5) -> tuple[LabelledImages, LabelledImages]:
    """A fixed split: image ``i`` is held out when ``i % every == every - 1``.

    Interleaved rather than the file's tail: the MNIST test file's first 5,000 images come from
    NIST's cleaner writers and the last 5,000 from the harder ones, so a tail would be a harder
    test set than the training part. With ``every=5`` MNIST's 10,000 become 8,000 / 2,000.

    Returns:
      ``(train, held_out)``.
    """
    if not isinstance(every, int) or every < 2:
        raise ValueError(f"every must be an int >= 2, got {every!r}")
    held = np.arange(len(images)) % every == every - 1
    return images.take(np.flatnonzero(~held)), images.take(np.flatnonzero(held))


def pixel_permutation(num_steps: int, seed: int) -> np.ndarray:
    """``[T]`` a fixed permutation of the time steps: the same ``seed`` gives the same one."""
    return np.random.default_rng(seed).permutation(num_steps)


def image_sequences(
    images: np.ndarray, order: str, permutation: np.ndarray | None = None
) -> np.ndarray:
    """Images as sequences.

    Args:
      images: ``[N, H, W]``.
      order: ``"rows"``: ``[N, H, W]``, one row a step (top first); ``"pixels"``:
        ``[N, H * W, 1]``, one pixel a step in row-major (reading) order.
      permutation: ``[T]``, optional: step ``t`` of the result is step ``permutation[t]`` of the
        order (the permuted pixel task).

    Returns:
      ``[N, T, F]`` float32.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {list(ORDERS)}, got {order!r}")
    n, h, w = images.shape
    sequences = images if order == "rows" else images.reshape(n, h * w, 1)
    if permutation is not None:
        if sorted(np.asarray(permutation).tolist()) != list(range(sequences.shape[1])):
            raise ValueError(
                f"permutation must reorder the {sequences.shape[1]} steps, got {len(permutation)} "
                "values that are not a permutation of them"
            )
        sequences = sequences[:, permutation]
    return np.ascontiguousarray(sequences, np.float32)


def shift_images(images: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Translates each image by whole pixels, filling with zeros (augmentation).

    Args:
      images: ``[N, H, W]``.
      shifts: ``[N, 2]`` ints ``(down, right)``; negative moves up / left.

    Returns:
      ``[N, H, W]``: ``out[i, y, x] = images[i, y - down, x - right]``, 0 outside the image.
    """
    n, h, w = images.shape
    pad = int(np.abs(shifts).max()) if len(shifts) else 0
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
    rows = pad - shifts[:, 0, None] + np.arange(h)[None, :]  # [N, H]
    cols = pad - shifts[:, 1, None] + np.arange(w)[None, :]  # [N, W]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
