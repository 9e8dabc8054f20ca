"""Sentence pairs for translation: the PyTorch tutorial's filter, a split by source, vocabularies.

The file format is manythings.org/anki's ``fra.txt``: one ``English<TAB>French`` pair per line
(``.gz`` or plain). ``load_translation`` reproduces the PyTorch tutorial "NLP From Scratch:
Translation with a Sequence to Sequence Network and Attention":

- ``normalize_sentence``: lower case, accents stripped (NFD without combining marks), a space
  before ``! ?`` (and ``.`` with ``keep_period``), every other run of non-letters one space;
- ``tutorial_filter``: fewer than 10 words on both sides, English starting with "i am", "i m",
  "he is", "he s", "she is", "she s", "you are", "you re", "we are", "we re", "they are",
  "they re". On ``../shared/data/eng-fra/fra.txt.gz`` this keeps 11,822 lines, 11,815 distinct
  pairs, 7,358 distinct English sentences of which 2,497 have several French references
  (10,922 lines with ``keep_period=True``, the tutorial's older form);

and then, unlike the tutorial, holds data out properly: the distinct English sentences are
shuffled with a fixed seed and split 80/10/10, so every French reference of a source lands in the
source's split (a pair-level split would put the same English sentence in train and test), and
each held-out source carries all its references for BLEU. Vocabularies come from the training
split only, with PAD=0, BOS=1, EOS=2, UNK=3.
"""

import dataclasses
import json
import os
import re
import tempfile
import unicodedata
from collections import Counter
from typing import ClassVar

import numpy as np

from rnnjax.data._errors import DataError
from rnnjax.data._text import read_text

ENGLISH_PREFIXES = (
    "i am ", "i m ", "he is", "he s ", "she is", "she s ",
    "you are", "you re ", "we are", "we re ", "they are", "they re ",
)  # fmt: skip
MAX_WORDS = 10  # the tutorial's MAX_LENGTH: both sides have fewer words
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(4)
_PUNCTUATION = re.compile(r"([.!?])")
_NOT_LETTERS = re.compile(r"[^a-zA-Z!?]+")
_NOT_LETTERS_KEEP_PERIOD = re.compile(r"[^a-zA-Z.!?]+")


def normalize_sentence(text: str, *, keep_period: bool = False) -> str:
    """The tutorial's ``normalizeString``: ``"Très bien."`` -> ``"tres bien"``."""
    text = text.lower().strip()
    if not text.isascii():
        text = "".join(
            c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn"
        )
    text = _PUNCTUATION.sub(r" \1", text)
    return (_NOT_LETTERS_KEEP_PERIOD if keep_period else _NOT_LETTERS).sub(" ", text).strip()


def read_pairs(path: str) -> list[tuple[str, str]]:
    """Raw ``(english, french)`` pairs of a tab-separated file (a third column is ignored).

    Raises:
      DataError: missing or unreadable file, or a non-empty line without a tab (its number given).
    """
    pairs = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) < 2:
            raise DataError(
                f"{path}:{number}: expected 'English<TAB>French', got {line[:60]!r} without a tab"
            )
        pairs.append((columns[0], columns[1]))
    if not pairs:
        raise DataError(f"{path} holds no sentence pairs")
    return pairs


def tutorial_filter(
    pairs, *, max_words: int = MAX_WORDS, prefixes=ENGLISH_PREFIXES, keep_period: bool = False
) -> list[tuple[str, str]]:
    """Normalised pairs with fewer than ``max_words`` words per side and an English prefix."""
    kept = []
    prefixes = tuple(prefixes)
    for english, french in pairs:
        en = normalize_sentence(english, keep_period=keep_period)
        if not en.startswith(prefixes) or len(en.split(" ")) >= max_words:
            continue
        fr = normalize_sentence(french, keep_period=keep_period)
        if fr and len(fr.split(" ")) < max_words:
            kept.append((en, fr))
    return kept


@dataclasses.dataclass(frozen=True)
class TranslationSplit:
    """Distinct sources with all their references (sorted), sources in shuffled order."""

    sources: tuple[str, ...]
    references: tuple[tuple[str, ...], ...]

    def pairs(self) -> list[tuple[str, str]]:
        """One (source, reference) pair per reference: the training examples."""
        return [(s, r) for s, refs in zip(self.sources, self.references, strict=True) for r in refs]

    def __len__(self) -> int:
        return len(self.sources)


def split_by_source(
    pairs, seed: int, fractions=(0.8, 0.1, 0.1)
) -> tuple[TranslationSplit, TranslationSplit, TranslationSplit]:
    """Splits by distinct source sentence: no source appears in two splits.

    The sorted distinct sources are permuted by ``np.random.default_rng(seed)``; the first
    ``fractions[0]`` train, the next ``fractions[1]`` validate, the rest test.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise DataError(f"fractions must be 3 numbers >= 0 summing to 1, got {fractions!r}")
    references: dict[str, set[str]] = {}
    for source, target in pairs:
        references.setdefault(source, set()).add(target)
    sources = sorted(references)
    order = np.random.default_rng(seed).permutation(len(sources))
    n_train = int(round(fractions[0] * len(sources)))
    n_valid = int(round(fractions[1] * len(sources)))
    bounds = (0, n_train, n_train + n_valid, len(sources))
    splits = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        chosen = [sources[i] for i in order[lo:hi]]
        splits.append(
            TranslationSplit(tuple(chosen), tuple(tuple(sorted(references[s])) for s in chosen))
        )
    return tuple(splits)


@dataclasses.dataclass(frozen=True)
class Vocabulary:
    """Words with ids; ``SPECIALS`` first (PAD=0, BOS=1, EOS=2, UNK=3)."""

    words: tuple[str, ...]
    pad_id: ClassVar[int] = PAD
    bos_id: ClassVar[int] = BOS
    eos_id: ClassVar[int] = EOS
    unk_id: ClassVar[int] = UNK

    def __post_init__(self):
        if self.words[: len(SPECIALS)] != SPECIALS or len(set(self.words)) != len(self.words):
            raise DataError(f"a vocabulary must start with {SPECIALS} and hold distinct words")

    @classmethod
    def build(cls, sentences, min_count: int = 1) -> "Vocabulary":
        """Words occurring at least ``min_count`` times, most frequent first (ties by name)."""
        counts = Counter(w for s in sentences for w in s.split())
        kept = [w for w, c in counts.items() if c >= min_count]
        kept.sort(key=lambda w: (-counts[w], w))
        return cls(SPECIALS + tuple(w for w in kept if w not in SPECIALS))

    @property
    def size(self) -> int:
        return len(self.words)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, sentence: str) -> list[int]:
        """Ids of the space-separated words; unknown words become UNK."""
        index = self._index
        return [index.get(w, UNK) for w in sentence.split()]

    @property
    def _index(self) -> dict[str, int]:
        cached = self.__dict__.get("_cached_index")
        if cached is None:
            cached = {w: i for i, w in enumerate(self.words)}
            object.__setattr__(self, "_cached_index", cached)
        return cached

    def decode(self, ids) -> str:
        """Words of ``ids`` up to the first EOS, without PAD and BOS."""
        words = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if i == EOS:
                break
            if i not in (PAD, BOS):
                words.append(self.words[i])
        return " ".join(words)

    def save(self, path: str) -> None:
        """Writes the words as JSON, atomically (a temporary file renamed into place)."""
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(list(self.words), f, ensure_ascii=False)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str) -> "Vocabulary":
        try:
            with open(path, encoding="utf-8") as f:
                words = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"cannot read vocabulary {path!r}: {e}") from None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise DataError(f"vocabulary {path!r} must be a JSON list of words")
        return cls(tuple(words))


def encode_sentences(
    sentences, vocab: Vocabulary, max_length: int, *, bos: bool = False, eos: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Padded ids ``[N, max_length]`` int32 (PAD after the end) and lengths ``[N]``.

    Each sentence becomes ``[BOS] words [EOS]`` as asked; longer ones are cut to ``max_length``.
    """
    ids = np.full((len(sentences), max_length), PAD, np.int32)
    lengths = np.zeros((len(sentences),), np.int32)
    for row, sentence in enumerate(sentences):
        tokens = ([BOS] if bos else []) + vocab.encode(sentence) + ([EOS] if eos else [])
        tokens = tokens[:max_length]
        ids[row, : len(tokens)] = tokens
        lengths[row] = len(tokens)
    return ids, lengths


@dataclasses.dataclass(frozen=True)
class TranslationData:
    """The three splits and the vocabularies (built from ``train``)."""

    train: TranslationSplit
    valid: TranslationSplit
    test: TranslationSplit
    source_vocab: Vocabulary
    target_vocab: Vocabulary


def load_translation(
    path: str,
    *,
    seed: int = 0,
    fractions=(0.8, 0.1, 0.1),
    keep_period: bool = False,
    min_count: int = 1,
    max_words: int = MAX_WORDS,
) -> TranslationData:
    """Reads, normalises, filters (``tutorial_filter``), splits by source and builds vocabularies.

    Raises:
      DataError: unreadable file, malformed lines, or fewer than 10 pairs after the filter.
    """
    pairs = tutorial_filter(read_pairs(path), max_words=max_words, keep_period=keep_period)
    if len(pairs) < 10:
        raise DataError(f"{path}: only {len(pairs)} pairs pass the tutorial's filter, need >= 10")
    train, valid, test = split_by_source(pairs, seed, fractions)
    train_pairs = train.pairs()
    return TranslationData(
        train,
        valid,
        test,
        Vocabulary.build([s for s, _ in train_pairs], min_count),
        Vocabulary.build([t for _, t in train_pairs], min_count),
    )
