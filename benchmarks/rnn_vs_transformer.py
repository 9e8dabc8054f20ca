r"""RNN versus Transformer on the character LM: the folklore table of RNN tutorials, measured.

Compares the char-LM presets ``shakespeare`` (one-layer LSTM, truncated BPTT) and
``shakespeare_transformer`` (``TransformerLM``, random windows), both built by the trainer's own
code (``experiments.tasks.char_lm``, ``experiments.run_state``), on five counts:

1. parameters, and training throughput: the median time of the jitted train step on the preset's
   batch (after compilation), as steps/s and tokens/s;
2. validation loss against wall-clock time, from the two runs' ``metrics.jsonl``: the time of an
   evaluation at step s is ``s`` times the median step time of (1), so both curves are on this
   machine's clock with evaluations and compilation left out (the runs themselves were made on a
   shared machine, whose clock says nothing);
3. peak memory of one training step (forward, backward, Adam update) against the sequence length T
   at the preset's batch, from XLA's compiled memory analysis (arguments + outputs + temporaries -
   aliased), so nothing is allocated: T that would not fit ``--memory_limit_gib`` are marked;
4. generation latency per token at batch 1: the LSTM's ``step`` (the same work at every position)
   against ``TransformerLM.decode_step`` on a KV cache holding ``position`` earlier tokens (random
   weights of the preset's shape; the Transformer's work grows with the position).

Run on a quiet machine (about 3 minutes on the 2-core Xeon; the two runs first, see the README):

  python -m benchmarks.rnn_vs_transformer --lstm_workdir=workdirs/lstm_shakespeare \
      --transformer_workdir=workdirs/shakespeare_transformer

Prints a markdown table, writes it with the numbers to ``<out>/rnn_vs_transformer.{md,json}`` and
two PNGs (loss against time; memory and latency against length). ``--small`` checks the script in
seconds (tiny presets, short lengths, curves only where the workdirs exist).
"""

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import tasks
from experiments.configs import char_lm
from experiments.run_state import create_train_state, make_optimizer
from rnnjax import training
from rnnjax.models import TransformerLM

VOCAB = 65  # Tiny Shakespeare's characters
NAMES = {"rnn": "LSTM", "transformer": "Transformer"}


class _Corpus:
    vocab_size = VOCAB


def _config(preset: str, seq_len: int | None = None):
    config = char_lm.get_config(preset)
    if seq_len is not None:
        config.seq_len = seq_len
    return config


def _train_step(config):
    """The trainer's jitted train step, its initial state and a batch, for ``config``."""
    task = tasks.get("char_lm")
    model = task.build_model(config, _Corpus())
    optimizer, schedule = make_optimizer(config)
    step = training.make_train_step(
        task.make_loss_fn(config, model),
        optimizer,
        max_norm=config.grad_clip_norm,
        learning_rate_fn=schedule,
    )
    make_state = lambda: create_train_state(config, task, model, optimizer)  # noqa: E731
    rng = np.random.default_rng(0)
    shape = (config.batch_size, config.seq_len)
    batch = {
        "inputs": rng.integers(0, VOCAB, shape, dtype=np.int32),
        "targets": rng.integers(0, VOCAB, shape, dtype=np.int32),
        "reset": np.bool_(False),
    }
    return model, step, make_state, batch


def throughput(preset: str, repeats: int) -> dict:
    """Parameters and the median train-step time of ``preset`` on its own batch."""
    config = _config(preset)
    _, step, make_state, batch = _train_step(config)
    state = make_state()
    params = sum(x.size for x in jax.tree.leaves(state.params))
    for _ in range(3):  # compilation and warm-up
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    tokens = config.batch_size * config.seq_len
    return {
        "parameters": int(params),
        "batch": config.batch_size,
        "seq_len": config.seq_len,
        "step_seconds": seconds,
        "steps_per_sec": 1.0 / seconds,
        "tokens_per_sec": tokens / seconds,
    }


def step_memory(preset: str, seq_len: int) -> float:
    """Bytes XLA plans for one train step of ``preset`` at ``seq_len`` (compiled, not run)."""
    config = _config(preset, seq_len)
    _, step, make_state, batch = _train_step(config)
    state = jax.eval_shape(make_state)
    batch = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), batch)
    stats = step.lower(state, batch).compile().memory_analysis()
    return float(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )


def _median_call_seconds(fn, repeats: int) -> float:
    for _ in range(3):  # compilation and warm-up
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def rnn_latency(preset: str, repeats: int) -> float:
    """Seconds per generated token of the LSTM's streaming ``step`` at batch 1."""
    model, *_ = _train_step(_config(preset))
    params = model.init(jax.random.PRNGKey(0))
    step = jax.jit(model.step)
    states, token = model.stream_state(), jnp.int32(1)
    return _median_call_seconds(lambda: step(params, states, token)[1], repeats)


def transformer_latency(preset: str, positions: list, repeats: int) -> list:
    """Seconds per token of ``decode_step`` at batch 1 with ``p`` tokens already cached."""
    m = _config(preset).model
    model = TransformerLM(VOCAB, max(positions) + 1, m.hidden_size, m.num_layers, m.num_heads)
    params = model.init(jax.random.PRNGKey(0))
    decode = jax.jit(model.decode_step)
    token = jnp.ones((1,), jnp.int32)
    out = []
    for p in positions:
        # A cache of exactly p + 1 slots: attention reads only the p cached positions and the new
        # one, the least work a cache can do at position p.
        cache = model.init_cache(1, p + 1)._replace(index=jnp.int32(p))
        out.append(_median_call_seconds(lambda c=cache: decode(params, c, token)[1], repeats))
    return out


def eval_curve(workdir: str) -> tuple:
    """``(steps, losses, final)`` from ``workdir/metrics.jsonl`` (last write wins): the
    intermediate evaluations, which all read the same first characters of the validation text,
    and ``final = (step, loss)``, the last evaluation (the whole split: not on the same scale)."""
    by_step = {}
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record["split"] == "eval":
                by_step[record["step"]] = (record["loss"], record.get("tokens"))
    steps = sorted(by_step)
    final = (steps[-1], by_step[steps[-1]][0])
    first_tokens = by_step[steps[0]][1]
    same = [s for s in steps[:-1] if by_step[s][1] == first_tokens] or steps
    return same, [by_step[s][0] for s in same], final


def _curve_tokens(workdir: str) -> int:
    """Characters read by the intermediate evaluations of ``workdir``."""
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record["split"] == "eval":
                return int(record.get("tokens", 0))
    return 0


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.3g}"


def _table(result: dict, limit_gib: float) -> str:
    kinds = list(result["throughput"])
    rows = ["| | " + " | ".join(NAMES[k] for k in kinds) + " |", "|---|" + "---|" * len(kinds)]

    def row(label, values):
        rows.append(f"| {label} | " + " | ".join(values) + " |")

    tp = result["throughput"]
    row("parameters", [f"{tp[k]['parameters']:,}" for k in kinds])
    row("training batch x length", [f"{tp[k]['batch']} x {tp[k]['seq_len']}" for k in kinds])
    row("training steps/s", [f"{tp[k]['steps_per_sec']:.1f}" for k in kinds])
    row("training tokens/s", [f"{tp[k]['tokens_per_sec']:,.0f}" for k in kinds])
    for k_curve in ("final_loss", "loss_at_equal_time"):
        if all(k in result.get(k_curve, {}) for k in kinds):
            label = {
                "final_loss": "final validation loss, whole split (nats/char) at step, seconds",
                "loss_at_equal_time": "validation loss at {:.0f} s (first {} chars)".format(
                    result["equal_time_s"], result["curve_tokens"]
                ),
            }[k_curve]
            row(label, [result[k_curve][k] for k in kinds])
    batch = result["memory_batch"]
    per_length = zip(*(result["memory"][k] for k in kinds), strict=True)
    for t, mem in zip(result["lengths"], per_length, strict=True):
        cells = [_gib(m) + (" (too much)" if m > limit_gib * 2**30 else "") for m in mem]
        row(f"train-step memory, B={batch}, T={t} (GiB)", cells)
    for p, lat in zip(result["positions"], result["latency_ms"]["transformer"], strict=True):
        row(
            f"generation ms/token at position {p} (batch 1)",
            [f"{result['latency_ms']['rnn']:.3f}", f"{lat:.3f}"],
        )
    return "\n".join(rows)


def _plot(result: dict, curves: dict, out: str, stem: str, limit_gib: float) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    if curves:
        fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=100)
        for kind, (seconds, losses, (final_s, final_loss)) in curves.items():
            line = ax.plot(seconds, losses, marker="o", ms=3, label=NAMES[kind])[0]
            ax.plot([final_s], [final_loss], marker="*", ms=10, ls="", color=line.get_color(),
                    label=f"{NAMES[kind]}, final (whole split)")  # fmt: skip
        ax.set_xlabel("training time on this machine (s; steps x median step time)")
        ax.set_ylabel("validation loss (nats/char)")
        ax.set_title("Tiny Shakespeare, char LM")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        paths.append(os.path.join(out, stem + "_loss.png"))
        fig.savefig(paths[-1])
        plt.close(fig)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    for kind, mem in result["memory"].items():
        left.plot(result["lengths"], np.array(mem) / 2**30, marker="o", label=NAMES[kind])
    left.axhline(limit_gib, color="gray", ls="--", label=f"{limit_gib:g} GiB (this machine)")
    left.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="GiB")
    left.set_title(f"train-step memory, batch {result['memory_batch']}")
    left.legend(fontsize=8)
    positions = result["positions"]
    rnn_ms = [result["latency_ms"]["rnn"]] * len(positions)
    right.plot(positions, rnn_ms, marker="o", label="LSTM step")
    right.plot(positions, result["latency_ms"]["transformer"], marker="o", label="KV cache")
    right.set(xscale="log", yscale="log", ylabel="ms per token")
    right.set_xlabel("position (tokens already generated)")
    right.set_title("generation latency, batch 1")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(os.path.join(out, stem + "_scaling.png"))
    fig.savefig(paths[-1])
    plt.close(fig)
    return paths


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lstm_workdir", default="workdirs/lstm_shakespeare")
    parser.add_argument("--transformer_workdir", default="workdirs/shakespeare_transformer")
    parser.add_argument("--lengths", default="256,1024,2048,4096,8192,16384")
    parser.add_argument("--positions", default="256,1024,4096,16384")
    parser.add_argument("--memory_limit_gib", type=float, default=24.0)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default="experiments/results")
    parser.add_argument("--small", action="store_true", help="tiny presets, short lengths")
    args = parser.parse_args(argv)
    presets = {"rnn": "shakespeare", "transformer": "shakespeare_transformer"}
    lengths = [int(t) for t in args.lengths.split(",")]
    positions = [int(p) for p in args.positions.split(",")]
    if args.small:
        presets = {"rnn": "tiny", "transformer": "tiny_transformer"}
        lengths, positions, args.repeats = [16, 64], [16, 64], 3
    workdirs = {"rnn": args.lstm_workdir, "transformer": args.transformer_workdir}
    result = {"presets": presets, "lengths": lengths, "positions": positions}
    result["throughput"] = {k: throughput(p, args.repeats) for k, p in presets.items()}
    result["memory_batch"] = _config(presets["rnn"]).batch_size
    result["memory"] = {k: [step_memory(p, t) for t in lengths] for k, p in presets.items()}
    result["latency_ms"] = {
        "rnn": 1e3 * rnn_latency(presets["rnn"], 10 * args.repeats),
        "transformer": [
            1e3 * s for s in transformer_latency(presets["transformer"], positions, args.repeats)
        ],
    }
    curves = {}
    for kind, workdir in workdirs.items():
        if os.path.exists(os.path.join(workdir, "metrics.jsonl")):
            steps, losses, (final_step, final_loss) = eval_curve(workdir)
            step_s = result["throughput"][kind]["step_seconds"]
            curves[kind] = ([s * step_s for s in steps], losses, (final_step * step_s, final_loss))
            result.setdefault("final_loss", {})[kind] = (
                f"{final_loss:.3f} ({final_step}, {final_step * step_s:.0f} s)"
            )
    if len(curves) == 2:
        # Both on the intermediate evaluations (the same characters), up to the shorter run.
        equal = min(c[0][-1] for c in curves.values())
        result["equal_time_s"] = equal
        result["curve_tokens"] = _curve_tokens(workdirs["rnn"])
        result["loss_at_equal_time"] = {
            kind: f"{np.interp(equal, seconds, losses):.3f}"
            for kind, (seconds, losses, _) in curves.items()
        }
    result["curves"] = curves
    os.makedirs(args.out, exist_ok=True)
    table = _table(result, args.memory_limit_gib)
    print(table)
    stem = "rnn_vs_transformer_small" if args.small else "rnn_vs_transformer"
    result["pngs"] = _plot(result, curves, args.out, stem, args.memory_limit_gib)
    with open(os.path.join(args.out, stem + ".md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    with open(os.path.join(args.out, stem + ".json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
