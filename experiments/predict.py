"""Predictions of a trained run: ``python -m experiments.predict --workdir=DIR --input --output``.

Loads the run's config (``DIR/config.json``), vocabulary and latest checkpoint, and lets its task
write one prediction per input row (for classification: a TSV with a ``sentence`` column; with a
``label`` column the last line printed is the accuracy and the number of rows).
"""

import json
import os

import ml_collections
from absl import app, flags, logging

from experiments import config_cli, run_state, tasks


def _define_flags():
    """Defined when run as a program only: ``experiments.train``, imported beside this module
    (tests), defines ``--workdir`` too."""
    flags.DEFINE_string("workdir", None, "Directory of a trained run.")
    flags.DEFINE_string("input", None, "Input file (for classification a TSV).")
    flags.DEFINE_string("output", None, "Output file, one prediction per input row.")


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run was trained with, as ``train`` wrote it."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise config_cli.ConfigError(f"no trained run in {workdir!r} (config.json is missing)")
    with open(path, encoding="utf-8") as f:
        return ml_collections.ConfigDict(json.load(f))


def predict(workdir: str, input_path: str, output_path: str) -> str:
    """Writes the predictions and returns the task's summary line."""
    config = load_run_config(workdir)
    task = tasks.get(config.get("task", "char_lm"))
    if not hasattr(task, "predict"):
        raise config_cli.ConfigError(
            f"the run in {workdir!r} is a {config.task!r} model, which has no predictions"
        )
    run_data = task.load_inference_data(config, workdir)
    model, params = run_state.restore_model(config, workdir, task, run_data)
    return task.predict(config, model, params, run_data, input_path, output_path)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    values = flags.FLAGS
    for name in ("workdir", "input", "output"):
        if not values[name].value:
            raise app.UsageError(f"--{name} is required")
    logging.set_verbosity(logging.WARNING)
    with config_cli.exit_on_user_error():
        print(predict(values.workdir, values.input, values.output))


if __name__ == "__main__":
    _define_flags()
    app.run(main)
