"""Translation pairs: the tutorial's normalisation and filter, the split by source (no leakage,
every reference kept), vocabularies, encoding and one-line errors; counts on the real file."""

import gzip
import pathlib

import numpy as np
import pytest

from rnnjax.data import (
    DataError,
    Vocabulary,
    encode_sentences,
    load_translation,
    normalize_sentence,
    read_pairs,
    split_by_source,
    tutorial_filter,
)

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
FRA = SHARED / "eng-fra" / "fra.txt.gz"


@pytest.mark.parametrize(
    "raw, want, want_period",
    [
        ("I'm cold.", "i m cold", "i m cold ."),
        (
            "Il est très bon\u202f!",
            "il est tres bon !",
            "il est tres bon !",
        ),
        ("  Ça va\u00a0?  ", "ca va ?", "ca va ?"),
        ("He's 6 feet tall...", "he s feet tall", "he s feet tall . . ."),
    ],
)
def test_normalisation_is_the_tutorials(raw, want, want_period):
    assert normalize_sentence(raw) == want
    assert normalize_sentence(raw, keep_period=True) == want_period


def _write(tmp_path, lines, name="pairs.txt.gz"):
    path = tmp_path / name
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


def _synthetic(n=60):
    lines = ["Go.\tVa !", "I am tired because the long journey made me very tired.\tJe suis las."]
    for i in range(n):
        word = "".join(chr(97 + int(d)) for d in f"{i:03d}")
        lines.append(f"I am {word}.\tJe suis {word}.")
        if i % 3 == 0:  # several references for one source
            lines.append(f"I am {word}.\tJe suis vraiment {word}\u202f!")
        if i % 5 == 0:
            lines.append(f"They're {word}!\tIls sont {word}.")
    return lines


def test_filter_keeps_short_pairs_with_an_english_prefix():
    pairs = tutorial_filter(
        [
            ("I am cold.", "J'ai froid."),
            ("Go.", "Va !"),  # no prefix
            ("She is " + "very " * 8 + "tall.", "Elle est grande."),  # 10 English words
            ("You're right.", "Tu as " + "tres " * 7 + "raison."),  # 10 French words
            ("We're here.", "Nous sommes ici."),
        ]
    )
    assert pairs == [("i am cold", "j ai froid"), ("we re here", "nous sommes ici")]


def test_split_by_source_has_no_leakage_and_keeps_every_reference(tmp_path):
    path = _write(tmp_path, _synthetic())
    data = load_translation(path, seed=3)
    splits = (data.train, data.valid, data.test)
    sources = [set(s.sources) for s in splits]
    assert not (sources[0] & sources[1] or sources[0] & sources[2] or sources[1] & sources[2])
    pairs = tutorial_filter(read_pairs(path))
    assert sum(len(s) for s in splits) == len({en for en, _ in pairs})
    assert [len(s) for s in splits] == [58, 7, 7]  # 72 distinct sources, 80/10/10
    everything = {}
    for en, fr in pairs:
        everything.setdefault(en, set()).add(fr)
    for split in splits:
        for source, refs in zip(split.sources, split.references, strict=True):
            assert set(refs) == everything[source]
    assert max(len(r) for s in splits for r in s.references) == 2
    # Same seed, same split; another seed, another order.
    assert load_translation(path, seed=3).test == data.test
    assert load_translation(path, seed=4).test != data.test


def test_vocabularies_come_from_training_only_with_distinct_specials(tmp_path):
    data = load_translation(_write(tmp_path, _synthetic()), seed=0)
    vocab = data.target_vocab
    assert vocab.words[:4] == ("<pad>", "<bos>", "<eos>", "<unk>")
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)
    train_words = {w for _, r in data.train.pairs() for w in r.split()}
    assert set(vocab.words[4:]) == train_words
    held_out = {w for s in (data.valid, data.test) for r in s.references for w in r[0].split()}
    assert held_out - train_words  # unseen names exist, and encode to UNK
    unseen = sorted(held_out - train_words)[0]
    assert vocab.encode(f"je suis {unseen}")[-1] == vocab.unk_id
    ids, lengths = encode_sentences(["je suis", "je"], vocab, 4, bos=True)
    np.testing.assert_array_equal(lengths, [4, 3])
    assert ids[0, 0] == vocab.bos_id and ids[0, 3] == vocab.eos_id and ids[1, 3] == vocab.pad_id
    assert vocab.decode(ids[0]) == "je suis"
    vocab.save(str(tmp_path / "v.json"))
    assert Vocabulary.load(str(tmp_path / "v.json")) == vocab


def test_bad_data_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_translation(str(tmp_path / "missing.txt"))
    bad = _write(tmp_path, ["I am here.\tJe suis ici.", "no tab on this line"], "bad.txt.gz")
    with pytest.raises(DataError, match=r"bad.txt.gz:2: expected 'English<TAB>French'"):
        read_pairs(bad)
    few = _write(tmp_path, ["Go.\tVa !"] * 20, "few.txt.gz")
    with pytest.raises(DataError, match="only 0 pairs pass the tutorial's filter"):
        load_translation(few)
    with pytest.raises(DataError, match="fractions must be"):
        split_by_source([("a", "b")], 0, (0.5, 0.6, 0.1))
    (tmp_path / "v.json").write_text("{}")
    with pytest.raises(DataError, match="must be a JSON list"):
        Vocabulary.load(str(tmp_path / "v.json"))


@pytest.mark.skipif(not FRA.exists(), reason=f"{FRA} is absent (the shared data sets)")
def test_real_file_counts():
    data = load_translation(str(FRA), seed=0)
    assert [len(data.train), len(data.valid), len(data.test)] == [5886, 736, 736]
    assert sum(len(s.pairs()) for s in (data.train, data.valid, data.test)) == 11815
    several = sum(len(r) > 1 for s in (data.train, data.valid, data.test) for r in s.references)
    assert several == 2497  # English sentences with several French references
    assert (data.source_vocab.size, data.target_vocab.size) == (2723, 4119)
    period = tutorial_filter(read_pairs(str(FRA)), keep_period=True)
    assert len(period) == 10922  # the count of ../shared/data/eng-fra/README.md
