"""Learning curves of one or several runs: ``python -m experiments.plot WORKDIR... [--out=F.png]``.

Reads each ``<workdir>/metrics.jsonl`` (the last line of each (split, step) wins, so resumed runs
plot once) and draws train and eval loss against the step, one colour per run. ``--table`` also
prints the eval metric as a Markdown table, one row per evaluated step and one column per run.
"""

import json
import os

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import matplotlib.pyplot as plt  # noqa: E402
from absl import app, flags  # noqa: E402

_OUT = flags.DEFINE_string("out", None, "PNG path; default <first workdir>/curves.png.")
_METRIC = flags.DEFINE_string("metric", "loss", "Metric to plot against the step.")
_TABLE = flags.DEFINE_bool("table", False, "Also print the eval metric as a Markdown table.")


def read_metrics(workdir: str) -> dict:
    """Returns ``{split: ([steps], [records])}`` of ``<workdir>/metrics.jsonl``, step-sorted."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no metrics.jsonl in {workdir!r}")
    latest = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                latest[(record["split"], record["step"])] = record
    runs = {}
    for (split, step), record in sorted(latest.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        steps, records = runs.setdefault(split, ([], []))
        steps.append(step)
        records.append(record)
    return runs


def plot_runs(workdirs: list, out: str, metric: str = "loss") -> str:
    """Draws ``metric`` of every workdir (train dashed, eval solid) into the PNG ``out``."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for index, workdir in enumerate(workdirs):
        colour = f"C{index % 10}"
        label = os.path.basename(os.path.normpath(workdir))
        for split, (steps, records) in read_metrics(workdir).items():
            values = [r.get(metric) for r in records]
            points = [(s, v) for s, v in zip(steps, values, strict=True) if v is not None]
            if not points:
                continue
            style = "--" if split == "train" else "-o"
            ax.plot(
                *zip(*points, strict=True),
                style,
                color=colour,
                markersize=3,
                label=f"{label} {split}",
            )
    ax.set_xlabel("step")
    ax.set_ylabel(metric + (" (nats/char)" if metric == "loss" else ""))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def eval_table(workdirs: list, metric: str = "loss") -> str:
    """The eval split's ``metric`` as a Markdown table: a row per step, a column per run; a run
    that did not evaluate at a step shows ``-``."""
    columns = []
    for workdir in workdirs:
        steps, records = read_metrics(workdir).get("eval", ([], []))
        columns.append({s: r.get(metric) for s, r in zip(steps, records, strict=True)})
    names = [os.path.basename(os.path.normpath(w)) for w in workdirs]
    lines = ["| step | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for step in sorted(set().union(*columns)):
        cells = ["-" if c.get(step) is None else f"{c[step]:.4f}" for c in columns]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    workdirs = argv[1:]
    if not workdirs:
        raise app.UsageError("usage: python -m experiments.plot WORKDIR... [--out=curves.png]")
    out = _OUT.value or os.path.join(workdirs[0], "curves.png")
    print(plot_runs(workdirs, out, _METRIC.value))
    if _TABLE.value:
        print(eval_table(workdirs, _METRIC.value))


if __name__ == "__main__":
    app.run(main)
