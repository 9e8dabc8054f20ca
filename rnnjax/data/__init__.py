"""Corpora, labelled sentences, vocabularies, batches: pure functions of (seed, step)."""

from rnnjax.data._batches import eval_windows, random_windows, stream_windows
from rnnjax.data._errors import DataError
from rnnjax.data._labelled import (
    PAD,
    UNK,
    LabelledSequences,
    bucket_of,
    bucketed_batch,
    build_vocab,
    encode,
    eval_batches,
    read_tsv,
    tokenize,
)
from rnnjax.data._text import CharCorpus, CorpusError, load_corpus, read_text, stdlib_text

__all__ = [
    "PAD",
    "UNK",
    "LabelledSequences",
    "bucket_of",
    "bucketed_batch",
    "build_vocab",
    "encode",
    "eval_batches",
    "read_tsv",
    "tokenize",
    "CharCorpus",
    "CorpusError",
    "DataError",
    "eval_windows",
    "load_corpus",
    "random_windows",
    "read_text",
    "stdlib_text",
    "stream_windows",
]
