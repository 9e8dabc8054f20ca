"""Translate English to French with a trained run, or plot its attention.

    python -m experiments.translate --workdir=DIR --input=FILE --output=FILE [--beam_size=K]
    echo "I am very tired." | python -m experiments.translate --workdir=DIR --input=-
    python -m experiments.translate --workdir=DIR --heatmap=attention.png [--num_heatmaps=4]

One English sentence per input line, one French line out (``--output=-``, the default, is
standard output; ``--input=-`` is standard input). Beam search of ``--beam_size`` (default: the
run's ``config.beam_size``; 1 is greedy decoding). ``--heatmap`` draws the attention weights of the
first ``--num_heatmaps`` sentences of ``--input`` (default: of the run's ``test_split.tsv``).

Input is handled as documented here, never with a traceback:

- each line is normalised as in training (lower case, accents stripped, punctuation but ``! ?``
  dropped); words the model has not seen become ``<unk>`` (counted in the summary line);
- a line that is empty after normalisation gives an empty output line (the lines stay aligned);
- a sentence of ``data.max_words`` (10) words or more is cut to its first ``max_words - 1`` words,
  with a warning on standard error naming the line and the limit;
- a beam size outside [1, target vocabulary], a workdir without a run, a run of another task or a
  missing input file: one line ``error: ...`` on standard error, exit status 2.
"""

import os
import sys

import numpy as np
from absl import app, flags, logging

from experiments import config_cli, predict, run_state, tasks
from experiments.tasks import _translation_eval as ev
from rnnjax import data


def _define_flags():
    """Defined when run as a program only, so that the task (and tests) can import this module
    beside ``experiments.train``, which defines ``--workdir`` too."""
    flags.DEFINE_string("workdir", None, "Directory of a trained translate run.")
    flags.DEFINE_string("input", None, "English sentences, one per line; '-' for stdin.")
    flags.DEFINE_string("output", "-", "French translations, one per line; '-' for stdout.")
    flags.DEFINE_integer("beam_size", None, "Beam size; 1 = greedy (default: the run's).")
    flags.DEFINE_float("length_penalty", None, "GNMT alpha (default: the run's).")
    flags.DEFINE_string("heatmap", None, "Write attention heatmaps to this PNG.")
    flags.DEFINE_integer("num_heatmaps", 4, "Sentences in the heatmap PNG.")


def load_run(workdir: str):
    """``(config, model, params, data)`` of a translate run; ``ConfigError`` for another task."""
    config = predict.load_run_config(workdir)
    if config.get("task") != "translate":
        raise config_cli.ConfigError(
            f"the run in {workdir!r} is a {config.get('task', 'char_lm')!r} model, "
            "not a translation model (config.task='translate')"
        )
    task = tasks.get("translate")
    run_data = task.load_inference_data(config, workdir)
    model, params = run_state.restore_model(config, workdir, task, run_data)
    return config, model, params, run_data


def prepare(lines, d, keep_period: bool, warn=None):
    """Normalised word lists of ``lines``, cut to ``max_length - 1`` words (``warn`` told)."""
    limit = d.max_length - 1  # one position is the EOS
    sentences = []
    for number, line in enumerate(lines, 1):
        words = data.normalize_sentence(line, keep_period=keep_period).split()
        if len(words) > limit and warn is not None:
            warn(f"line {number}: {len(words)} words, the model reads at most {limit}: "
                 f"translating the first {limit}")  # fmt: skip
        sentences.append(words[:limit])
    return sentences


def _check_beam(beam: int, d) -> None:
    if not 1 <= beam <= d.target_vocab.size:
        raise config_cli.ConfigError(
            f"beam_size must be in [1, {d.target_vocab.size}] (the target vocabulary), got {beam}"
        )


def _read_lines(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.read().splitlines()
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read().splitlines()


def translate_file(config, model, params, d, input_path, output_path, beam, alpha=None) -> str:
    """Translates ``input_path`` into ``output_path`` (``-``: stdin/stdout); the summary line."""
    _check_beam(beam, d)
    alpha = config.length_penalty if alpha is None else alpha
    warn = lambda m: print(f"warning: {m}", file=sys.stderr)  # noqa: E731
    sentences = prepare(_read_lines(input_path), d, config.data.keep_period, warn)
    keep = [i for i, words in enumerate(sentences) if words]
    ids, lengths = data.encode_sentences([" ".join(sentences[i]) for i in keep],
                                         d.source_vocab, d.max_length)  # fmt: skip
    translate = ev.make_translate(model, d.max_length, config.eval_batch_size)
    outputs = translate(params, ids, lengths, beam, alpha) if keep else []
    lines = [""] * len(sentences)
    for i, out in zip(keep, outputs, strict=True):
        lines[i] = d.target_vocab.decode(out)
    if output_path == "-":
        sys.stdout.writelines(line + "\n" for line in lines)
    else:
        ev.write_lines(output_path, lines)
    unknown = int(np.sum(ids == d.source_vocab.unk_id)) if keep else 0
    where = "standard output" if output_path == "-" else output_path
    return (f"translated {len(keep)} of {len(lines)} lines ({len(lines) - len(keep)} empty) with "
            f"{'greedy decoding' if beam == 1 else f'beam {beam}'}, {unknown} unknown words, "
            f"to {where}")  # fmt: skip


def heatmap(config, model, params, d, workdir, input_path, path, count) -> str:
    """Writes the attention heatmaps of ``count`` sentences to ``path``."""
    if config.model.attention == "none":
        raise config_cli.ConfigError("the run's model has no attention (model.attention='none')")
    if count < 1:
        raise config_cli.ConfigError(f"num_heatmaps must be >= 1, got {count}")
    if input_path:
        lines = _read_lines(input_path)
    else:
        with open(os.path.join(workdir, "test_split.tsv"), encoding="utf-8") as f:
            lines = [line.split("\t")[0] for line in f.read().splitlines()]
    sentences = [w for w in prepare(lines, d, config.data.keep_period) if w][:count]
    if not sentences:
        raise config_cli.ConfigError("no sentence to plot: the input has no non-empty line")
    ids, lengths = data.encode_sentences([" ".join(w) for w in sentences], d.source_vocab,
                                         d.max_length)  # fmt: skip
    translate = ev.make_translate(model, d.max_length, config.eval_batch_size)
    sources = list(zip(sentences, ids, lengths, strict=True))
    ev.attention_heatmaps(model, params, sources, d.target_vocab, translate, path)
    return f"wrote attention heatmaps of {len(sentences)} sentences to {path}"


def run(workdir, input_path, output_path="-", beam_size=None, length_penalty=None,
        heatmap_path=None, num_heatmaps=4) -> str:  # fmt: skip
    """What the command does; returns its summary line (raises the errors ``main`` reports)."""
    config, model, params, d = load_run(workdir)
    if heatmap_path:
        return heatmap(config, model, params, d, workdir, input_path, heatmap_path, num_heatmaps)
    beam = config.beam_size if beam_size is None else beam_size
    return translate_file(config, model, params, d, input_path, output_path, beam, length_penalty)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    v = flags.FLAGS
    if not v.workdir:
        raise app.UsageError("--workdir is required")
    if not (v.input or v.heatmap):
        raise app.UsageError("--input (or --heatmap) is required")
    logging.set_verbosity(logging.WARNING)
    with config_cli.exit_on_user_error():
        line = run(v.workdir, v.input, v.output, v.beam_size, v.length_penalty, v.heatmap,
                   v.num_heatmaps)  # fmt: skip
        print(line, file=sys.stderr if v.output == "-" else sys.stdout)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
