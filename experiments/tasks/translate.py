"""English -> French translation: the PyTorch tutorial's pairs, an attention seq2seq, BLEU.

Config: ``experiments/configs/translate.py``. At the start of a run the vocabularies are saved in
``<workdir>/vocab.json`` and the test split in ``<workdir>/test_split.tsv`` (source, then every
reference, tab-separated). The final evaluation translates the test split greedily and with a
beam of ``config.beam_size``, writes ``test_greedy.txt`` and ``test_beam<K>.txt`` and reports
their BLEU and exact match. ``experiments.translate`` translates new sentences.
"""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

import rnnjax
from experiments import config_cli
from experiments.tasks import _precision
from experiments.tasks import _translation_eval as ev
from rnnjax import data
from rnnjax.models import Decoder, Encoder, Seq2Seq, TeacherForcingSchedule, sequence_loss

LAYERS = {"rnn": rnnjax.RNN, "lstm": rnnjax.LSTM, "gru": rnnjax.GRU}
CELLS = {"rnn": rnnjax.cells.ElmanCell, "lstm": rnnjax.cells.LSTMCell, "gru": rnnjax.cells.GRUCell}
ATTENTION = ("none", "bahdanau", "luong")
LUONG_SCORES = ("dot", "general", "concat")
SCHEDULES = ("", "linear", "exponential", "inverse_sigmoid")


@dataclasses.dataclass(frozen=True, eq=False)
class TranslateData:
    """Vocabularies, the encoded training pairs and the held-out splits (None for inference),
    and the run's workdir (where the final evaluation writes the test translations)."""

    source_vocab: data.Vocabulary
    target_vocab: data.Vocabulary
    max_length: int
    train: dict | None = None
    valid: data.TranslationSplit | None = None
    test: data.TranslationSplit | None = None
    workdir: str = ""


def validate(config) -> None:
    """Raises ``ConfigError`` for translation fields that cannot run."""
    config_cli.check_positive_ints(
        config, "eval_batch_size", "beam_size", "show_examples", "model.hidden_size",
        "model.num_layers", "model.embed_size", "data.max_words",
    )  # fmt: skip
    config_cli.check_choice(config, "model.cell", tuple(LAYERS))
    _precision.validate(config)
    config_cli.check_choice(config, "model.attention", ATTENTION)
    config_cli.check_choice(config, "model.luong_score", LUONG_SCORES)
    config_cli.check_choice(config, "model.bridge", rnnjax.models.BRIDGES)
    config_cli.check_choice(config, "model.backend", [b.value for b in rnnjax.Backend])
    config_cli.check_choice(config, "scheduled_sampling.kind", SCHEDULES)
    config_cli.check_range(config, "model.dropout", 0.0, 1.0)
    config_cli.check_range(config, "label_smoothing", 0.0, 1.0)
    if not config.data.path:
        raise config_cli.ConfigError(
            "set config.data.path to the pairs file (../shared/data/eng-fra/fra.txt.gz)"
        )
    if config.scheduled_sampling.kind:
        try:
            _schedule(config)
        except ValueError as e:
            raise config_cli.ConfigError(f"config.scheduled_sampling: {e}") from None


def _schedule(config) -> TeacherForcingSchedule:
    s = config.scheduled_sampling
    return TeacherForcingSchedule(s.kind, k=s.k, c=s.c, minimum=s.minimum)


def load_data(config, workdir: str) -> TranslateData:
    """Reads, filters and splits the pairs; saves the vocabularies and the test split."""
    d = config.data
    pairs = data.load_translation(
        d.path, seed=d.split_seed, keep_period=d.keep_period, min_count=d.min_count,
        max_words=d.max_words,
    )  # fmt: skip
    vocab_file = os.path.join(workdir, "vocab.json")
    if os.path.exists(vocab_file):
        source_vocab, target_vocab = _read_vocab(vocab_file)
    else:
        source_vocab, target_vocab = pairs.source_vocab, pairs.target_vocab
        ev.write_lines(vocab_file, [json.dumps({"task": "translate",
                                                "source": list(source_vocab.words),
                                                "target": list(target_vocab.words)})])  # fmt: skip
    ev.write_lines(
        os.path.join(workdir, "test_split.tsv"),
        ["\t".join((s, *refs)) for s, refs in zip(pairs.test.sources, pairs.test.references,
                                                  strict=True)],
    )  # fmt: skip
    n = d.max_words
    src, tgt = zip(*pairs.train.pairs(), strict=True)
    src_ids, src_len = data.encode_sentences(src, source_vocab, n)
    tgt_in, _ = data.encode_sentences(tgt, target_vocab, n, bos=True, eos=False)
    tgt_out, tgt_len = data.encode_sentences(tgt, target_vocab, n)
    train = {"src": src_ids, "src_len": src_len, "tgt_in": tgt_in, "tgt_out": tgt_out,
             "tgt_len": tgt_len}  # fmt: skip
    return TranslateData(source_vocab, target_vocab, n, train, pairs.valid, pairs.test, workdir)


def load_inference_data(config, workdir: str) -> TranslateData:
    source_vocab, target_vocab = _read_vocab(os.path.join(workdir, "vocab.json"))
    return TranslateData(source_vocab, target_vocab, config.data.max_words, workdir=workdir)


def _read_vocab(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        return data.Vocabulary(tuple(saved["source"])), data.Vocabulary(tuple(saved["target"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise data.DataError(f"cannot read the run's vocabularies {path!r}: {e}") from None


def describe(d: TranslateData) -> str:
    return (
        f"{len(d.train['src'])} training pairs, {len(d.valid)} validation and {len(d.test)} "
        f"test sources, vocabularies {d.source_vocab.size} en / {d.target_vocab.size} fr, "
        f"{d.max_length} tokens per side"
    )


def tokens_per_step(config) -> int:
    return config.batch_size * config.data.max_words  # target positions (padding included)


def build_model(config, d: TranslateData) -> Seq2Seq:
    m = config.model
    layer = LAYERS[m.cell](
        m.hidden_size, m.num_layers, bidirectional=m.bidirectional, dropout=m.dropout,
        backend=m.backend,
    )  # fmt: skip
    layer = _precision.layer(config, layer)
    encoder = Encoder(layer, d.source_vocab.size, m.embed_size, dropout=m.dropout)
    attention = {"none": "none", "bahdanau": "bahdanau", "luong": m.luong_score}[m.attention]
    hidden = encoder.output_size if attention == "dot" else m.hidden_size
    decoder = Decoder(
        _precision.cell(config, CELLS[m.cell](hidden)), d.target_vocab.size, m.embed_size,
        memory_size=encoder.output_size, summary_size=encoder.summary_size,
        attention=attention, input_feeding=m.input_feeding, bridge=m.bridge, dropout=m.dropout,
    )  # fmt: skip
    return Seq2Seq(encoder, decoder)


def initial_carry(config, model):
    return ()


def train_batch(config, d: TranslateData, step: int) -> dict:
    """Epochs of shuffled pairs: the permutation of epoch e is drawn from (seed, e)."""
    n, b = len(d.train["src"]), config.batch_size
    rows = np.arange(step * b, (step + 1) * b)
    epochs = rows // n
    order = {e: np.random.default_rng([config.seed, e]).permutation(n) for e in set(epochs)}
    index = np.array([order[e][r % n] for e, r in zip(epochs, rows, strict=True)])
    batch = {k: v[index] for k, v in d.train.items()}
    if config.scheduled_sampling.kind:
        batch["teacher_prob"] = np.full((b,), float(_schedule(config)(step)), np.float32)
    return batch


def make_loss_fn(config, model: Seq2Seq):
    """Label-smoothed cross-entropy over the valid target tokens; nll and accuracy as metrics."""

    def loss_fn(params, carry, batch, key):
        k_drop, k_sample = jax.random.split(key)
        prob = batch.get("teacher_prob")
        logits, _ = model(
            params, batch["src"], batch["src_len"], batch["tgt_in"], teacher_prob=prob,
            sample_key=None if prob is None else k_sample, dropout_key=k_drop,
        )  # fmt: skip
        loss, metrics = sequence_loss(
            logits, batch["tgt_out"], batch["tgt_len"], label_smoothing=config.label_smoothing
        )
        aux = {"nll": metrics["nll"], "accuracy": metrics["accuracy"]}
        if prob is not None:
            aux["teacher_prob"] = jnp.mean(prob)
        return loss, (carry, aux)

    return loss_fn


def _encode_sources(sources, d: TranslateData):
    return data.encode_sentences(sources, d.source_vocab, d.max_length)


def make_evaluator(config, model: Seq2Seq, d: TranslateData):
    """Validation loss, token accuracy and greedy BLEU; at the end also the test split, greedy and
    with the beam, written to the workdir (the trainer's ``DIR/final_eval.json`` has the scores)."""
    translate = ev.make_translate(model, d.max_length, config.eval_batch_size)
    src, tgt = zip(*d.valid.pairs(), strict=True)
    src_ids, src_len = data.encode_sentences(src, d.source_vocab, d.max_length)
    tgt_in, _ = data.encode_sentences(tgt, d.target_vocab, d.max_length, bos=True, eos=False)
    tgt_out, tgt_len = data.encode_sentences(tgt, d.target_vocab, d.max_length)

    @jax.jit
    def nll(params, src, src_len, tgt_in, tgt_out, tgt_len):
        logits, _ = model(params, src, src_len, tgt_in)
        _, metrics = sequence_loss(logits, tgt_out, tgt_len)
        return metrics["nll"] * metrics["tokens"], metrics["accuracy"] * metrics["tokens"]

    def evaluate(params, final: bool) -> dict:
        totals, count, size = np.zeros(2), 0.0, config.eval_batch_size
        for start in range(0, len(src_ids), size):
            rows = slice(start, start + size)
            pad = size - len(src_ids[rows])
            arrays = [np.concatenate([a[rows], np.repeat(a[:1], pad, 0)])
                      for a in (src_ids, src_len, tgt_in, tgt_out)]  # fmt: skip
            lengths = np.concatenate([tgt_len[rows], np.zeros(pad, np.int32)])  # pad rows count 0
            totals += np.asarray(nll(params, *arrays, lengths))
            count += float(lengths.sum())
        metrics = {"loss": totals[0] / count, "accuracy": totals[1] / count}
        metrics.update(_bleu(params, d.valid, "", beam=1))
        if final:
            for beam in (1, config.beam_size):
                name = "greedy" if beam == 1 else f"beam{beam}"
                metrics.update(_bleu(params, d.test, f"test_{name}_", beam, d.workdir, name))
        return metrics

    def _bleu(params, split, prefix, beam, workdir="", name=""):
        ids, lengths = _encode_sources(split.sources, d)
        outputs = translate(params, ids, lengths, beam, config.length_penalty)
        hypotheses = [d.target_vocab.decode(o) for o in outputs]
        if workdir:
            ev.write_lines(os.path.join(workdir, f"test_{name}.txt"), hypotheses)
        result = ev.scores(hypotheses, split.references)
        return {f"{prefix}bleu": result["bleu"], f"{prefix}exact_match": result["exact_match"]}

    return evaluate


def make_show(config, model: Seq2Seq, d: TranslateData):
    """A few validation sentences, their greedy translation and first reference."""
    translate = ev.make_translate(model, d.max_length, config.eval_batch_size)
    sources = d.valid.sources[: config.show_examples]
    ids, lengths = _encode_sources(sources, d)

    def show(params, step: int) -> str:
        del step
        outputs = translate(params, ids, lengths)
        return "\n".join(
            f"{s} => {d.target_vocab.decode(o)} (ref: {refs[0]})"
            for s, o, refs in zip(sources, outputs, d.valid.references, strict=False)
        )

    return show


def predict(config, model, params, d: TranslateData, input_path: str, output_path: str) -> str:
    """Translates one English sentence per line (``experiments.predict``): beam ``beam_size``."""
    from experiments import translate

    return translate.translate_file(
        config, model, params, d, input_path, output_path, config.beam_size
    )
