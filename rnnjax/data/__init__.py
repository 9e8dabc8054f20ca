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
from rnnjax.data._translation import (
    TranslationData,
    TranslationSplit,
    Vocabulary,
    encode_sentences,
    load_translation,
    normalize_sentence,
    read_pairs,
    split_by_source,
    tutorial_filter,
)

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
    "TranslationData",
    "TranslationSplit",
    "Vocabulary",
    "encode_sentences",
    "eval_windows",
    "load_corpus",
    "load_translation",
    "normalize_sentence",
    "read_pairs",
    "random_windows",
    "read_text",
    "split_by_source",
    "stdlib_text",
    "stream_windows",
    "tutorial_filter",
]
