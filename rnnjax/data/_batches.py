"""Training and evaluation batches of a token array as pure functions of (seed, step).

Resuming a run needs no iterator state: the batch of step k is recomputed from (seed, k).
Inputs and targets are ``[B, T]`` int32; the target at position t is the input at t + 1.
"""

import numpy as np


def random_windows(tokens: np.ndarray, seed: int, step: int, batch_size: int, seq_len: int):
    """B independent windows at uniformly random offsets; returns ``(inputs, targets)``."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(tokens) - seq_len, size=batch_size)
    windows = tokens[starts[:, None] + np.arange(seq_len + 1)[None, :]]
    return windows[:, :-1], windows[:, 1:]


def stream_windows(tokens: np.ndarray, seed: int, step: int, batch_size: int, seq_len: int):
    """Consecutive windows of B parallel streams, for truncated BPTT with a carried state.

    The text (less a random shift in [0, T) drawn per pass) is cut into B contiguous streams;
    step k reads window ``k mod W`` of every stream, W windows per pass. A new pass starts at
    window 0, where ``reset`` is True and the carried state must be zeroed.

    Returns:
      ``(inputs, targets, reset)`` with ``reset`` a Python bool.
    """
    stream_len = (len(tokens) - seq_len - 1) // batch_size
    windows_per_pass = stream_len // seq_len
    if windows_per_pass < 1:
        raise ValueError(
            f"{len(tokens)} tokens are too few for {batch_size} streams of windows of {seq_len}"
        )
    epoch, window = divmod(step, windows_per_pass)
    shift = np.random.default_rng([seed, epoch, 1]).integers(0, seq_len)
    starts = shift + np.arange(batch_size) * stream_len + window * seq_len
    chunk = tokens[starts[:, None] + np.arange(seq_len + 1)[None, :]]
    return chunk[:, :-1], chunk[:, 1:], window == 0


def eval_windows(tokens: np.ndarray, batch_size: int, seq_len: int):
    """Covers every target of ``tokens`` exactly once, in B streams of consecutive windows.

    Yields ``(inputs, targets, mask)`` with ``mask`` ``[B, T]`` float32, 0 at the padding that
    fills the end of the last streams; consecutive yields continue the same streams, so a state can
    be carried between them.
    """
    num_targets = len(tokens) - 1
    stream_len = -(-num_targets // batch_size)
    stream_len = -(-stream_len // seq_len) * seq_len
    padded = np.zeros(batch_size * stream_len + 1, np.int32)
    padded[: len(tokens)] = tokens
    mask = np.zeros(batch_size * stream_len, np.float32)
    mask[:num_targets] = 1.0
    inputs = padded[:-1].reshape(batch_size, stream_len)
    targets = padded[1:].reshape(batch_size, stream_len)
    mask = mask.reshape(batch_size, stream_len)
    for t in range(0, stream_len, seq_len):
        window = slice(t, t + seq_len)
        yield inputs[:, window], targets[:, window], mask[:, window]
