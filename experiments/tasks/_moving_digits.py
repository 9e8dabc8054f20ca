"""Moving digits: an MNIST digit crossing a blank canvas in a straight line, one frame per step.

Each example is a digit image (``../shared/data/mnist-test``, downscaled to ``digit_size``), a
direction among 4 or 8 compass directions, a speed in pixels per frame and a start position drawn
so that the digit stays on the canvas for every frame. Start positions are uniform over the
positions that keep it there, so a trajectory and its time reversal are equally likely: the set of
frames says where the digit went along an axis, only their order says which way.

Frames are ``[B, T, C, C]`` float32 in [0, 1] (T frames of a C x C canvas).
"""

import dataclasses
import os

import numpy as np

from rnnjax.data import DataError, read_mnist

# (dy, dx) per direction label, y growing downwards: E, N, W, S, then NE, NW, SW, SE.
DIRECTIONS = ((0, 1), (-1, 0), (0, -1), (1, 0), (-1, 1), (-1, -1), (1, -1), (1, 1))
DIRECTION_NAMES = ("E", "N", "W", "S", "NE", "NW", "SW", "SE")


@dataclasses.dataclass(frozen=True, eq=False)
class Trajectories:
    """Where each example's digit is in each frame: ``ys``, ``xs`` ``[N, T]`` (top-left corner)."""

    directions: np.ndarray  # [N] labels into DIRECTIONS
    ys: np.ndarray  # [N, T]
    xs: np.ndarray  # [N, T]
    orders: np.ndarray  # [N, T]: the frame shown at each step (arange, or shuffled)


def load_digits(folder: str, digit_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(images [N, S, S] float32 in [0, 1], labels [N])`` from MNIST's test-split IDX files."""
    mnist = read_mnist(
        os.path.join(folder, "t10k-images-idx3-ubyte.gz"),
        os.path.join(folder, "t10k-labels-idx1-ubyte.gz"),
    )
    if mnist.images.shape[1:] != (28, 28):
        raise DataError(f"expected [N, 28, 28] images in {folder!r}, got {mnist.images.shape}")
    if mnist.labels.max() > 9:
        raise DataError(f"MNIST labels must be 0-9, found {mnist.labels.max()} in {folder!r}")
    factor = 28 // digit_size
    n = len(mnist.images)
    small = mnist.images.reshape(n, digit_size, factor, digit_size, factor).mean(axis=(2, 4))
    return small.astype(np.float32), mnist.labels


def sample_trajectories(
    rng: np.random.Generator,
    count: int,
    *,
    num_frames: int,
    canvas: int,
    digit_size: int,
    num_directions: int,
    max_speed: int,
    shuffle_frames: bool,
) -> Trajectories:
    """Random straight-line trajectories that keep the digit on the canvas in every frame."""
    directions = rng.integers(num_directions, size=count)
    speeds = rng.integers(1, max_speed + 1, size=count)
    steps = np.asarray(DIRECTIONS)[directions] * speeds[:, None]  # [N, 2] pixels per frame
    travel = steps * (num_frames - 1)  # displacement from the first frame to the last
    room = canvas - digit_size
    low = np.maximum(0, -travel)  # start positions for which every frame fits
    start = low + rng.integers(0, room - np.abs(travel) + 1)  # uniform in [low, room - |travel|]
    t = np.arange(num_frames)
    ys = start[:, :1] + steps[:, :1] * t
    xs = start[:, 1:] + steps[:, 1:] * t
    orders = np.tile(t, (count, 1))
    if shuffle_frames:
        orders = rng.permuted(orders, axis=1)
    return Trajectories(directions, ys, xs, orders)


def render(digits: np.ndarray, paths: Trajectories, rows, canvas: int) -> np.ndarray:
    """Frames ``[B, T, C, C]`` of ``digits[b]`` (``[B, S, S]``) along ``paths`` rows ``rows``."""
    ys, xs = paths.ys[rows], paths.xs[rows]
    batch, num_frames = ys.shape
    size = digits.shape[-1]
    frames = np.zeros((batch, num_frames, canvas, canvas), np.float32)
    b = np.arange(batch)[:, None, None, None]
    t = np.arange(num_frames)[None, :, None, None]
    r = ys[:, :, None, None] + np.arange(size)[None, None, :, None]
    c = xs[:, :, None, None] + np.arange(size)[None, None, None, :]
    frames[b, t, r, c] = digits[:, None]
    return np.take_along_axis(frames, paths.orders[rows][:, :, None, None], axis=1)
