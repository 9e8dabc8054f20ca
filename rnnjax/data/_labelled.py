"""Labelled sentences (GLUE-style TSV), word vocabularies and length-bucketed batches.

Batches are pure functions of (seed, step): each epoch's plan (examples shuffled within buckets of
similar length, cut into batches, batch order shuffled) is recomputed from (seed, epoch), so a
resumed run sees exactly the batches of an uninterrupted one. Padding is bounded by the bucket, not
by the longest sentence of the data set.
"""

import csv
import dataclasses
import functools
import gzip
import io
import os
from collections import Counter

import numpy as np

from rnnjax.data._errors import DataError

PAD, UNK = "<pad>", "<unk>"


@dataclasses.dataclass(frozen=True, eq=False)
class LabelledSequences:
    """Token ids of N sequences, stored ragged, with optional integer labels.

    Attributes:
      tokens: ``[sum of lengths]`` int32 ids, the sequences one after the other.
      offsets: ``[N + 1]`` start of each sequence in ``tokens``.
      labels: ``[N]`` int32, or ``None`` when the file had no label column.
    """

    tokens: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray | None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets).astype(np.int32)

    def batch(self, indices: np.ndarray, num_steps: int) -> dict:
        """``{"inputs" [B, T] (0 = padding), "lengths" [B], "labels" [B]}`` of ``indices``."""
        lengths = np.minimum(self.lengths[indices], num_steps)
        inputs = np.zeros((len(indices), num_steps), np.int32)
        for row, (i, n) in enumerate(zip(indices, lengths, strict=True)):
            inputs[row, :n] = self.tokens[self.offsets[i] : self.offsets[i] + n]
        batch = {"inputs": inputs, "lengths": lengths}
        if self.labels is not None:
            batch["labels"] = self.labels[indices]
        return batch


def read_tsv(path: str, *, text_column: str = "sentence", label_column: str | None = "label"):
    """Reads a TSV with a header (plain or ``.gz``); returns ``(texts, labels or None)``.

    Args:
      path: the file.
      text_column: the column holding the text.
      label_column: the column of integer labels; ``None`` or absent from the header gives
        ``None`` labels.

    Raises:
      DataError: missing or unreadable file, no header, no ``text_column``, a label that is not
        an integer, a row with too few fields.
    """
    if not os.path.isfile(path):
        raise DataError(f"data file not found: {path!r}")
    try:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            text = f.read().decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read data file {path!r}: {e}") from None
    rows = list(csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise DataError(f"{path!r} is empty: expected a header line with a {text_column!r} column")
    header = rows[0]
    if text_column not in header:
        raise DataError(f"{path!r} has no {text_column!r} column (header: {header})")
    text_at = header.index(text_column)
    label_at = header.index(label_column) if label_column in header else None
    texts, labels = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        needed = max(text_at, label_at or 0) + 1
        if len(row) < needed:
            raise DataError(f"{path!r} line {line}: {len(row)} fields, expected {len(header)}")
        texts.append(row[text_at].strip())  # GLUE leaves a space before the tab
        if label_at is not None:
            try:
                labels.append(int(row[label_at]))
            except ValueError:
                raise DataError(
                    f"{path!r} line {line}: label {row[label_at]!r} is not an integer"
                ) from None
    return texts, (np.asarray(labels, np.int32) if label_at is not None else None)


def tokenize(text: str) -> list[str]:
    """Lower-cased whitespace tokens (SST-2 ships tokenised, lower-cased text)."""
    return text.strip().lower().split()


def build_vocab(texts, *, min_count: int = 1, max_size: int = 0) -> list[str]:
    """``[PAD, UNK, words...]``: words seen ``min_count`` times, most frequent first (ties by
    word), at most ``max_size`` entries in all when > 0."""
    counts = Counter(word for text in texts for word in tokenize(text))
    words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    vocab = [PAD, UNK, *words]
    return vocab[:max_size] if max_size else vocab


def encode(texts, vocab: list[str], labels: np.ndarray | None = None) -> LabelledSequences:
    """Ids of each text's tokens; words outside ``vocab`` map to ``UNK`` (id 1)."""
    index = {word: i for i, word in enumerate(vocab)}
    unk = index[UNK]
    ids = [np.asarray([index.get(w, unk) for w in tokenize(t)], np.int32) for t in texts]
    offsets = np.zeros(len(ids) + 1, np.int64)
    offsets[1:] = np.cumsum([len(x) for x in ids])
    tokens = np.concatenate(ids) if ids else np.zeros(0, np.int32)
    return LabelledSequences(tokens.astype(np.int32), offsets, labels)


def bucket_of(lengths: np.ndarray, boundaries: tuple) -> np.ndarray:
    """The index of the first boundary >= each length (the last bucket takes the rest)."""
    return np.minimum(np.searchsorted(np.asarray(boundaries), lengths), len(boundaries) - 1)


def bucketed_batch(
    data: LabelledSequences, boundaries: tuple, batch_size: int, seed: int, step: int
) -> dict:
    """The training batch of ``step``: B examples of one bucket, padded to its boundary.

    Every example appears once per epoch (the last batch of a bucket is filled up with that
    bucket's first examples of the epoch). Sequences longer than the last boundary are truncated
    to it.
    """
    plan = _epoch_plan(data, boundaries, batch_size, seed, 0)
    epoch, index = divmod(step, len(plan))
    if epoch:
        plan = _epoch_plan(data, boundaries, batch_size, seed, epoch)
    bucket, indices = plan[index]
    return data.batch(indices, boundaries[bucket])


@functools.lru_cache(maxsize=4)
def _epoch_plan(data, boundaries: tuple, batch_size: int, seed: int, epoch: int) -> list:
    rng = np.random.default_rng([seed, epoch])
    buckets = bucket_of(data.lengths, boundaries)
    plan = []
    for bucket in range(len(boundaries)):
        members = rng.permutation(np.flatnonzero(buckets == bucket))
        if not len(members):
            continue
        count = -(-len(members) // batch_size)
        filled = np.resize(members, count * batch_size)  # wraps around to fill the last batch
        plan += [(bucket, rows) for rows in filled.reshape(count, batch_size)]
    order = rng.permutation(len(plan))
    return [plan[i] for i in order]


def eval_batches(data: LabelledSequences, boundaries: tuple, batch_size: int):
    """Every example once, sorted by length, in batches padded to a bucket boundary.

    Yields ``(batch, weights)``: the last batch of each bucket is filled with copies of its first
    row, weighted 0, so that shapes stay within the buckets' (a bounded number of compilations).
    """
    buckets = bucket_of(data.lengths, boundaries)
    for bucket in range(len(boundaries)):
        members = np.flatnonzero(buckets == bucket)
        for start in range(0, len(members), batch_size):
            rows = members[start : start + batch_size]
            weights = np.zeros(batch_size, np.float32)
            weights[: len(rows)] = 1.0
            rows = np.concatenate([rows, np.full(batch_size - len(rows), rows[0])])
            yield data.batch(rows, boundaries[bucket]), weights
