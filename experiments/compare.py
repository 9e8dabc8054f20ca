r"""RNN vs GRU vs LSTM, one and two directions, several seeds, on SST-2 under one step budget.

  python -m experiments.compare --data_dir=../shared/data/sst2 --out=workdirs/compare

Every run trains the ``sst2.py`` config with the cell and direction swapped in and the same
number of steps (so every model sees the same batches), then is timed for inference. Training
speed is the median of the logged steps/s after the first log (compilation excluded). Writes
``<out>/compare.md`` (a Markdown table: dev accuracy mean ± std over seeds, training time per
epoch, steps/s, parameters, latency per sentence at batch 1, sentences/s at batch 256) and
``<out>/compare.png``. Finished runs are kept: rerunning the command skips them.
"""

import itertools
import json
import os
import time

import jax
import matplotlib
import numpy as np
from absl import app, flags, logging

from experiments import run_state, tasks, train
from experiments.configs import sst2
from rnnjax import data

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder with train.tsv.gz and dev.tsv.")
_OUT = flags.DEFINE_string("out", "workdirs/compare", "Folder of the runs, table and plot.")
_CELLS = flags.DEFINE_list("cells", ["rnn", "gru", "lstm"], "Cells to compare.")
_DIRECTIONS = flags.DEFINE_list("directions", ["uni", "bi"], "uni and/or bi.")
_SEEDS = flags.DEFINE_integer("seeds", 3, "Seeds per configuration.")
_STEPS = flags.DEFINE_integer("num_steps", 1000, "Training steps of every run.")
_HIDDEN = flags.DEFINE_integer("hidden_size", 128, "Hidden units of every cell.")
_EMBED = flags.DEFINE_integer("embed_size", 128, "Embedding size.")
_PRESET = flags.DEFINE_string("preset", "default", "sst2.py preset the runs start from.")


def run_config(cell: str, direction: str, seed: int):
    config = sst2.get_config(_PRESET.value)
    config.seed = seed
    config.num_steps = _STEPS.value
    config.time_budget_s = 0.0
    config.eval_every = config.checkpoint_every = max(_STEPS.value, 1)
    config.data.dir = _DATA_DIR.value or config.data.dir
    config.model.cell = cell
    config.model.bidirectional = direction == "bi"
    config.model.hidden_size = _HIDDEN.value
    config.model.embed_size = _EMBED.value
    return config


def inference_speed(config, workdir: str) -> dict:
    """Median latency of one sentence (batch 1) and sentences/s at batch 256 on the dev file."""
    task = tasks.get(config.task)
    run_data = task.load_data(config, workdir)
    model, params = run_state.restore_model(config, workdir, task, run_data)
    probabilities = task.make_probabilities(model)
    dev = run_data.valid
    one = dev.batch(np.array([0]), run_data.boundaries[-1])
    jax.block_until_ready(probabilities(params, one["inputs"], one["lengths"]))
    times = []
    for i in range(50):
        single = dev.batch(np.array([i % len(dev)]), run_data.boundaries[-1])
        start = time.perf_counter()
        jax.block_until_ready(probabilities(params, single["inputs"], single["lengths"]))
        times.append(time.perf_counter() - start)
    task.predict_all(probabilities, params, dev, run_data.boundaries, 256)  # compile
    start = time.perf_counter()
    task.predict_all(probabilities, params, dev, run_data.boundaries, 256)
    return {
        "latency_ms": 1e3 * float(np.median(times)),
        "sentences_per_s": len(dev) / (time.perf_counter() - start),
        "parameters": sum(x.size for x in jax.tree.leaves(params)),
        "train_rows": len(run_data.train),
    }


def run_one(cell: str, direction: str, seed: int) -> dict:
    workdir = os.path.join(_OUT.value, f"{cell}-{direction}-seed{seed}")
    result_file = os.path.join(workdir, "compare_result.json")
    if os.path.exists(result_file):
        with open(result_file, encoding="utf-8") as f:
            return json.load(f)
    config = run_config(cell, direction, seed)
    final = train.train_and_evaluate(config, workdir)
    result = {"cell": cell, "direction": direction, "seed": seed, **final}
    result.update(inference_speed(config, workdir))
    with open(result_file, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    return result


def training_speed(result: dict) -> dict:
    """Steps/s as the median of the logged rates after the first log (which holds the
    compilations), and the seconds an epoch takes at that rate."""
    workdir = os.path.join(
        _OUT.value, f"{result['cell']}-{result['direction']}-seed{result['seed']}"
    )
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    rates = [r["steps_per_sec"] for r in records if r["split"] == "train"][1:]
    steps_per_s = float(np.median(rates)) if rates else result["step"] / result["train_seconds"]
    batch_size = run_config(result["cell"], result["direction"], result["seed"]).batch_size
    epoch_steps = result["train_rows"] / batch_size
    return {"steps_per_s": steps_per_s, "seconds_per_epoch": epoch_steps / steps_per_s}


def summarize(results: list) -> list:
    rows = []
    for (cell, direction), group in itertools.groupby(
        results, key=lambda r: (r["cell"], r["direction"])
    ):
        group = list(group)
        accuracy = 100 * np.array([r["accuracy"] for r in group])
        mean = {k: float(np.mean([r[k] for r in group])) for k in
                ("seconds_per_epoch", "steps_per_s", "parameters", "latency_ms",
                 "sentences_per_s")}  # fmt: skip
        rows.append({"cell": cell, "direction": direction, "seeds": len(group),
                     "accuracy": float(accuracy.mean()), "accuracy_std": float(accuracy.std()),
                     **mean})  # fmt: skip
    return rows


def write_table(rows: list, path: str) -> None:
    lines = [
        "| cell | directions | dev accuracy % (mean ± std, seeds) | s / epoch | steps/s | "
        "parameters | latency / sentence, batch 1 | sentences/s, batch 256 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cell'].upper()} | {1 + (r['direction'] == 'bi')} | "
            f"{r['accuracy']:.2f} ± {r['accuracy_std']:.2f} ({r['seeds']}) | "
            f"{r['seconds_per_epoch']:.0f} | {r['steps_per_s']:.1f} | {r['parameters']:,.0f} | "
            f"{r['latency_ms']:.2f} ms | {r['sentences_per_s']:,.0f} |"
        )
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def plot(rows: list, path: str) -> None:
    names = [f"{r['cell'].upper()} {'bi' if r['direction'] == 'bi' else 'uni'}" for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.bar(names, [r["accuracy"] for r in rows], yerr=[r["accuracy_std"] for r in rows])
    left.set_ylim(min(r["accuracy"] for r in rows) - 3, max(r["accuracy"] for r in rows) + 2)
    left.set_ylabel("SST-2 dev accuracy (%)")
    right.bar(names, [r["seconds_per_epoch"] for r in rows], color="tab:orange")
    right.set_ylabel("training seconds per epoch")
    for axis in (left, right):
        axis.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    for direction in _DIRECTIONS.value:
        if direction not in ("uni", "bi"):
            raise app.UsageError(f"--directions takes uni and bi, got {direction!r}")
    start = time.monotonic()
    try:
        results = [
            run_one(cell, direction, seed)
            for cell in _CELLS.value
            for direction in _DIRECTIONS.value
            for seed in range(_SEEDS.value)
        ]
    except data.DataError as e:
        raise app.UsageError(str(e)) from None
    results = [{**r, **training_speed(r)} for r in results]
    rows = summarize(results)
    os.makedirs(_OUT.value, exist_ok=True)
    write_table(rows, os.path.join(_OUT.value, "compare.md"))
    plot(rows, os.path.join(_OUT.value, "compare.png"))
    with open(os.path.join(_OUT.value, "compare.md"), encoding="utf-8") as f:
        print(f.read())
    print(
        f"{len(results)} runs in {time.monotonic() - start:.0f} s; table and plot in {_OUT.value}"
    )


if __name__ == "__main__":
    app.run(main)
