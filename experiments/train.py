"""The trainer: ``python -m experiments.train --config=experiments/configs/NAME.py --workdir=DIR``.

One loop for every task: ``config.task`` names a module of ``experiments/tasks`` that supplies the
data, model, loss, evaluation and what to show; the loop, optimizer, schedule, clipping,
checkpoints, preemption, metrics and time budget are here. Any config field can be overridden
(``--config.model.cell=gru``). Rerunning the same command with the same workdir resumes from the
latest checkpoint; SIGTERM saves one and exits with status 143.
"""

import json
import os
import signal
import sys
import time

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from experiments import config_cli, tasks
from experiments.run_state import create_train_state, make_optimizer
from rnnjax import data, training

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path[:preset]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")


class Preempted(Exception):
    """SIGTERM arrived; a checkpoint of the current step was saved."""


def _mean_metrics(pending: list) -> dict:
    """Means over the steps since the last log; one device-to-host transfer."""
    pending = jax.device_get(pending)
    return {name: float(np.mean([m[name] for m in pending])) for name in pending[0]}


def _log_eval(step: int, metrics: dict) -> None:
    shown = " | ".join(
        f"{name} {value:.4f}" if value != int(value) else f"{name} {int(value)}"
        for name, value in metrics.items()
    )
    logging.info("eval step %d | %s", step, shown)


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains ``config`` in ``workdir`` (resuming from it) and returns the final eval metrics."""
    task = tasks.get(config.task)
    os.makedirs(workdir, exist_ok=True)
    data = task.load_data(config, workdir)
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
        f.write(config.to_json(indent=2))
    model = task.build_model(config, data)
    optimizer, schedule = make_optimizer(config)
    checkpointer = training.Checkpointer(
        os.path.join(workdir, "checkpoints"), config.keep_checkpoints
    )
    state = checkpointer.restore_latest(create_train_state(config, task, model, optimizer))
    train_step = training.make_train_step(
        task.make_loss_fn(config, model),
        optimizer,
        max_norm=config.grad_clip_norm,
        learning_rate_fn=schedule,
    )
    evaluate = task.make_evaluator(config, model, data)
    show = task.make_show(config, model, data)
    writer = training.MetricWriter(workdir)

    def evaluate_and_show(params, step, final):
        metrics = evaluate(params, final)
        writer.write(step, "eval", metrics)
        _log_eval(step, metrics)
        text = show(params, step)
        if text:
            writer.write_text(step, "sample", text)
            logging.info("at step %d:\n%s", step, text)
        return metrics

    step = int(state.step)
    logging.info(
        "%s at step %d: task %s, %s, %d parameters",
        "resuming" if step else "starting",
        step,
        config.task,
        task.describe(data),
        sum(x.size for x in jax.tree.leaves(state.params)),
    )
    throughput = training.Throughput(step, config.num_steps, task.tokens_per_step(config))
    start, pending = time.monotonic(), []
    with training.PreemptionFlag() as preemption:
        while step < config.num_steps:
            batch = task.train_batch(config, data, step)
            state, metrics = train_step(state, batch)
            pending.append(metrics)
            step += 1
            if step % config.log_every == 0 or step == config.num_steps:
                training.check_finite(state, config.max_nonfinite_in_a_row)
                means = _mean_metrics(pending)
                means.update(throughput.measure(step), nonfinite_total=int(state.nonfinite_total))
                writer.write(step, "train", means)
                logging.info(training.console_line(step, config.num_steps, means))
                pending = []
            if step % config.checkpoint_every == 0:
                checkpointer.save(state)
            if preemption.requested:
                checkpointer.save(state)
                raise Preempted(f"SIGTERM at step {step}: checkpoint saved in {workdir}")
            if step % config.eval_every == 0 and step < config.num_steps:
                evaluate_and_show(state.params, step, final=False)
                throughput.restart(step)
            if config.time_budget_s and time.monotonic() - start > config.time_budget_s:
                logging.warning(
                    "time budget of %.0fs reached at step %d", config.time_budget_s, step
                )
                break
    train_seconds = time.monotonic() - start
    checkpointer.save(state)
    final = evaluate_and_show(state.params, step, final=True)
    final.update(step=step, train_seconds=train_seconds)
    with open(os.path.join(workdir, "final_eval.json"), "w", encoding="utf-8") as f:
        json.dump(final, f, indent=2)
    writer.close()
    checkpointer.close()
    return final


def _quiet_libraries(record) -> bool:
    """Drops the INFO chatter of orbax (every save logs dozens of lines)."""
    return record.levelno >= logging.converter.STANDARD_WARNING or "orbax" not in record.pathname


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _CONFIG.value is None or not _WORKDIR.value:
        raise app.UsageError("--config and --workdir are required")
    logging.get_absl_handler().python_handler.stream = sys.stdout
    logging.get_absl_handler().addFilter(_quiet_libraries)
    logging.set_verbosity(logging.INFO)
    try:
        config_cli.validate(_CONFIG.value)
        train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except (config_cli.ConfigError, data.DataError, training.CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except training.NonFiniteError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except Preempted as e:
        logging.warning("%s; rerun the same command to resume", e)
        sys.exit(128 + signal.SIGTERM)


if __name__ == "__main__":
    app.run(main, flags_parser=config_cli.parse_flags)
