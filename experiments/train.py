"""The trainer: ``python -m experiments.train --config=experiments/configs/NAME.py --workdir=DIR``.

One loop for every task: ``config.task`` names a module of ``experiments/tasks`` that supplies the
data, model, loss, evaluation and what to show; the loop, optimizer, schedule, clipping,
checkpoints, preemption, metrics and time budget are here. Any config field can be overridden
(``--config.model.cell=gru``). Rerunning the same command with the same workdir resumes from the
latest checkpoint; SIGTERM saves one and exits with status 143.

The same command runs data parallel over every device it sees, and over several processes when
started by ``launch/`` (SLURM, TPU VM, Kubernetes, ``python -m launch.local``; or the
``--coordinator``, ``--num_processes`` and ``--process_id`` flags): ``config.batch_size`` is the
global batch, split over the devices; process 0 writes the metrics, samples and evaluations.
"""

import functools
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
from rnnjax import data, diagnostics, training

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path[:preset]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator", None, "host:port of process 0, for a multi-process job outside launch/."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes of the job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in the job.")


class Preempted(Exception):
    """SIGTERM arrived; a checkpoint of the current step was saved."""


class _NoWriter:
    """The metric writer of every process but 0: only process 0 writes files."""

    def write(self, *args) -> None:
        pass

    write_text = write
    close = write


def _place_state(config, task, model, optimizer, mesh):
    """The initial state on ``mesh``: replicated, but the carry split along its batch axis."""

    def carry_of(batch_size):
        resized = config.copy_and_resolve_references()
        resized.batch_size = batch_size
        return task.initial_carry(resized, model)

    make = functools.partial(create_train_state, config, task, model, optimizer)
    carry = training.batch_axis_sharding(carry_of, config.batch_size, mesh)
    shardings = training.train_state_sharding(jax.eval_shape(make), mesh, carry)
    return jax.jit(make, out_shardings=shardings)()


def _global_batch(batch: dict, rows, mesh, batch_size: int) -> dict:
    """This process's ``rows`` of the task's batch, assembled into arrays split over ``mesh``."""
    local = jax.tree.map(lambda a: a[rows] if np.ndim(a) else a, batch)
    return training.make_global_batch(local, mesh, batch_size)


def _over_budget(config, start: float, step: int) -> bool:
    """Whether the time budget is spent. With several processes process 0's clock decides, at
    logging steps only (it is a collective), so that every process stops at the same step."""
    if not config.time_budget_s or (jax.process_count() > 1 and step % config.log_every):
        return False
    return training.agree(time.monotonic() - start > config.time_budget_s)


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


def _make_diagnose(config, task, model, data):
    """``diagnose(params) -> dict`` of ``rnnjax.diagnostics.summary`` (jitted), or None when
    ``config.diagnostics_every`` is 0: nothing is built or run then."""
    every = config.get("diagnostics_every", 0)
    if not every:
        return None
    if every < 0 or not hasattr(task, "diagnostics_probe"):
        raise config_cli.ConfigError(
            f"config.diagnostics_every must be 0 (off) or a positive number of steps for a task "
            f"with diagnostics_probe, got {every} for task {config.task!r}"
        )

    def diagnose(params):
        return diagnostics.summary(*task.diagnostics_probe(config, model, data, params))

    return jax.jit(diagnose)


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains ``config`` in ``workdir`` (resuming from it) and returns the final eval metrics."""
    task = tasks.get(config.task)
    mesh = training.make_mesh()
    try:
        training.per_device_batch(config.batch_size, mesh)
    except ValueError as e:
        raise config_cli.ConfigError(f"config.{e}") from None
    logging.info("data parallel: %s", training.describe(mesh, config.batch_size))
    main = training.is_main_process()
    os.makedirs(workdir, exist_ok=True)
    data = task.load_data(config, workdir) if main else None
    training.barrier("load_data")  # process 0 has written the vocabulary; the others read it
    if data is None:
        data = task.load_data(config, workdir)
    if main:
        with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
            f.write(config.to_json(indent=2))
    model = task.build_model(config, data)
    optimizer, schedule = make_optimizer(config)
    checkpointer = training.Checkpointer(
        os.path.join(workdir, "checkpoints"), config.keep_checkpoints
    )
    state = checkpointer.restore_latest(_place_state(config, task, model, optimizer, mesh))
    train_step = training.make_train_step(
        task.make_loss_fn(config, model),
        optimizer,
        max_norm=config.grad_clip_norm,
        learning_rate_fn=schedule,
    )
    evaluate = task.make_evaluator(config, model, data)
    show = task.make_show(config, model, data)
    writer = training.MetricWriter(workdir) if main else _NoWriter()
    diagnose = _make_diagnose(config, task, model, data)

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
    rows = training.process_batch_rows(config.batch_size, mesh)
    start, pending = time.monotonic(), []
    with jax.set_mesh(mesh), training.PreemptionSync() as preemption:
        while step < config.num_steps:
            batch = task.train_batch(config, data, step)
            state, metrics = train_step(state, _global_batch(batch, rows, mesh, config.batch_size))
            pending.append(metrics)
            step += 1
            if step % config.log_every == 0 or step == config.num_steps:
                training.check_finite(state, config.max_nonfinite_in_a_row)
                means = _mean_metrics(pending)
                means.update(throughput.measure(step), nonfinite_total=int(state.nonfinite_total))
                writer.write(step, "train", means)
                logging.info(training.console_line(step, config.num_steps, means))
                pending = []
            if diagnose and (step % config.diagnostics_every == 0 or step == 1):
                writer.write(step, "diagnostics", diagnose(state.params))
            if step % config.checkpoint_every == 0:
                checkpointer.save(state)
            if preemption.reached(step):
                checkpointer.save(state)
                raise Preempted(f"SIGTERM at step {step}: checkpoint saved in {workdir}")
            if step % config.eval_every == 0 and step < config.num_steps:
                evaluate_and_show(state.params, step, final=False)
                throughput.restart(step)
            if _over_budget(config, start, step):
                logging.warning(
                    "time budget of %.0fs reached at step %d", config.time_budget_s, step
                )
                break
    train_seconds = time.monotonic() - start
    checkpointer.save(state)
    with jax.set_mesh(mesh):
        final = evaluate_and_show(state.params, step, final=True)
    final.update(step=step, train_seconds=train_seconds)
    if main:
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
        found = training.maybe_initialize_distributed(
            _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value
        )
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    if not training.is_main_process():
        logging.set_verbosity(logging.WARNING)  # process 0 tells the story
    logging.info("processes: %d (%s), this is process %d",
                 jax.process_count(), found, jax.process_index())  # fmt: skip
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
