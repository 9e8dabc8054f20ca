"""Reading a text corpus (plain or gzip, UTF-8), its character vocabulary and its 90/10 split."""

import dataclasses
import gzip
import os
import sysconfig

import numpy as np

from rnnjax.data._errors import DataError


class CorpusError(DataError):
    """A data file that is missing, unreadable, not UTF-8 or too short; the message says which."""


@dataclasses.dataclass(frozen=True)
class CharCorpus:
    """Token ids of a character corpus split into a training and a validation part.

    Attributes:
      vocab: the characters, id i is ``vocab[i]``.
      train: ``[N_train]`` int32 ids, the first part of the text.
      valid: ``[N_valid]`` int32 ids, the rest (empty when there is no validation split).
    """

    vocab: str
    train: np.ndarray
    valid: np.ndarray

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        """Ids of ``text``; raises ``CorpusError`` naming a character outside the vocabulary."""
        return _encode(text, self.vocab)

    def decode(self, ids) -> str:
        return "".join(self.vocab[i] for i in np.asarray(ids).reshape(-1))


def read_text(path: str) -> str:
    """Returns the UTF-8 text of ``path``, gunzipped when the name ends in ``.gz``.

    Raises:
      CorpusError: the file is missing, is not gzip despite ``.gz``, or is not UTF-8.
    """
    if not os.path.isfile(path):
        raise CorpusError(f"data file not found: {path!r}")
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            with open(path, "rb") as f:
                raw = f.read()
    except (gzip.BadGzipFile, EOFError, OSError) as e:
        raise CorpusError(f"cannot read data file {path!r}: {e}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"data file {path!r} is not UTF-8 text (byte {e.start}: {raw[e.start : e.start + 4]!r})"
        ) from None


def stdlib_text(max_chars: int) -> str:
    """Real text present on every machine: Python's standard library ``*.py`` files.

    Concatenates the top-level modules of ``sysconfig.get_paths()["stdlib"]`` in sorted name order
    until ``max_chars`` characters; the content therefore depends on the Python version.
    """
    root = sysconfig.get_paths()["stdlib"]
    parts, total = [], 0
    for name in sorted(os.listdir(root)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(root, name), encoding="utf-8", errors="replace") as f:
            parts.append(f.read())
        total += len(parts[-1])
        if total >= max_chars:
            break
    return "".join(parts)[:max_chars]


def load_corpus(
    text: str, val_fraction: float, *, min_chars: int = 2, vocab: str | None = None
) -> CharCorpus:
    """Encodes ``text`` and splits it: the first ``1 - val_fraction`` trains, the rest validates.

    Args:
      text: the corpus.
      val_fraction: in [0, 1); 0 gives an empty validation split.
      min_chars: the least number of characters each non-empty split must hold (e.g. seq_len + 1).
      vocab: a fixed vocabulary (e.g. restored with a checkpoint); by default the sorted set of the
        text's characters.

    Raises:
      CorpusError: the text or one of its splits is shorter than ``min_chars``, or holds a
        character missing from ``vocab``.
    """
    if len(text) < min_chars:
        raise CorpusError(
            f"the corpus has {len(text)} characters, fewer than the {min_chars} needed"
        )
    vocab = "".join(sorted(set(text))) if vocab is None else vocab
    ids = _encode(text, vocab)
    split = int(len(ids) * (1.0 - val_fraction))  # nanoGPT's split: 1,003,854 chars of Shakespeare
    train, valid = ids[:split], ids[split:]
    for name, part in (("training", train), ("validation", valid)):
        if val_fraction > 0 and len(part) < min_chars:
            raise CorpusError(
                f"the {name} split has {len(part)} characters, fewer than the {min_chars} needed "
                f"(corpus of {len(text)} characters, val_fraction={val_fraction})"
            )
    return CharCorpus(vocab, train, valid)


def _encode(text: str, vocab: str) -> np.ndarray:
    table = {c: i for i, c in enumerate(vocab)}
    try:
        return np.fromiter((table[c] for c in text), dtype=np.int32, count=len(text))
    except KeyError as e:
        raise CorpusError(f"character {e.args[0]!r} is not in the vocabulary") from None
