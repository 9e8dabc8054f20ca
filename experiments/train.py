"""The trainer: ``python -m experiments.train --config=experiments/configs/NAME.py --workdir=DIR``.

Any config field can be overridden (``--config.model.cell=gru``). Rerunning the same command with
the same workdir resumes from the latest checkpoint; SIGTERM saves one and exits with status 143.
"""

import json
import os
import signal
import sys
import time

import jax
import numpy as np
import optax
from absl import app, flags, logging
from ml_collections import config_flags

from experiments import char_task, config_cli
from rnnjax import data, training

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path[:preset]).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")


class Preempted(Exception):
    """SIGTERM arrived; a checkpoint of the current step was saved."""


def make_schedule(config):
    if config.schedule == "constant":
        return optax.constant_schedule(config.learning_rate)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=config.warmup_steps,
        decay_steps=config.num_steps,
        end_value=config.learning_rate * config.final_lr_fraction,
    )


def create_train_state(config, model, optimizer):
    init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))
    carry = model.initial_state(config.batch_size) if config.data.tbptt else ()
    params = jax.jit(model.init)(init_key)  # one compilation instead of many small eager ops
    return training.create_train_state(params, optimizer, train_key, carry)


def _mean_metrics(pending: list) -> dict:
    """Means over the steps since the last log; one device-to-host transfer."""
    pending = jax.device_get(pending)
    return {name: float(np.mean([m[name] for m in pending])) for name in pending[0]}


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains ``config`` in ``workdir`` (resuming from it) and returns the final eval metrics."""
    os.makedirs(workdir, exist_ok=True)
    corpus = char_task.load_corpus(config, workdir)
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
        f.write(config.to_json(indent=2))
    model = char_task.build_model(config, corpus.vocab_size)
    schedule = make_schedule(config)
    optimizer = training.make_optimizer(
        optax.adamw(schedule, weight_decay=config.weight_decay), config.grad_clip_norm
    )
    checkpointer = training.Checkpointer(
        os.path.join(workdir, "checkpoints"), config.keep_checkpoints
    )
    state = checkpointer.restore_latest(create_train_state(config, model, optimizer))
    train_step = training.make_train_step(
        char_task.make_loss_fn(model, config.data.tbptt),
        optimizer,
        max_norm=config.grad_clip_norm,
        learning_rate_fn=schedule,
    )
    eval_step = char_task.make_eval_step(model, config.data.tbptt)
    sample = char_task.make_sampler(model, corpus, config)
    writer = training.MetricWriter(workdir)

    def evaluate_and_sample(params, step, max_tokens):
        tokens = corpus.valid if len(corpus.valid) else corpus.train
        metrics = char_task.evaluate(config, model, eval_step, params, tokens, max_tokens)
        writer.write(step, "eval", metrics)
        logging.info(
            "eval step %d | loss %.4f nats/char | %.4f bits/char | accuracy %.4f | %d chars",
            step, metrics["loss"], metrics["bits_per_char"], metrics["accuracy"], metrics["tokens"],
        )  # fmt: skip
        text = sample(params, step)
        writer.write_text(step, "sample", text)
        logging.info("sample at step %d:\n%s", step, text)
        return metrics

    step = int(state.step)
    logging.info(
        "%s at step %d: %d train / %d validation chars, vocabulary %d, %d parameters",
        "resuming" if step else "starting",
        step,
        len(corpus.train),
        len(corpus.valid),
        corpus.vocab_size,
        sum(x.size for x in jax.tree.leaves(state.params)),
    )
    tokens_per_step = config.batch_size * config.seq_len
    throughput = training.Throughput(step, config.num_steps, tokens_per_step)
    start, pending = time.monotonic(), []
    with training.PreemptionFlag() as preemption:
        while step < config.num_steps:
            batch = char_task.train_batch(config, corpus.train, step)
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
                evaluate_and_sample(state.params, step, config.eval_max_tokens)
                throughput.restart(step)
            if config.time_budget_s and time.monotonic() - start > config.time_budget_s:
                logging.warning(
                    "time budget of %.0fs reached at step %d", config.time_budget_s, step
                )
                break
    checkpointer.save(state)
    final = evaluate_and_sample(state.params, step, max_tokens=0)  # the whole validation split
    final.update(step=step, train_seconds=time.monotonic() - start)
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
    except (config_cli.ConfigError, data.CorpusError) as e:
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
