r"""Runs the adding / copy grid one run at a time and writes a markdown table of the test results.

  nice -n 5 python -m experiments.memory_sweep --workdir=workdirs/memory \
      --runs=adding:lstm:100,adding:gru:100,adding:rnn:100 --out=experiments/results/memory.md

Each run is ``experiments.train`` with ``experiments/configs/{adding,copy}.py`` (the default
preset), ``--config.model.cell`` and ``--config.data.seq_len`` set, and ``time_budget_s=0`` (the
presets are sized in steps, so a loaded machine gives the same numbers). A run whose workdir
already holds ``final_eval.json`` is not run again; the table lists every run of ``--runs``
that has one (test MSE or loss against the memoryless baseline, steps, seconds, steps/s).
"""

import json
import math
import os
import subprocess
import sys

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", "workdirs/memory", "Parent of the runs' workdirs.")
_RUNS = flags.DEFINE_list("runs", [], "problem:cell:T[:extra_name] entries, in order.")
_OUT = flags.DEFINE_string("out", "experiments/results/memory.md", "Markdown table to write.")
_EXTRA = flags.DEFINE_multi_string(
    "extra", [], "name=--config.a=1 --config.b=2: overrides of the runs whose 4th field is name."
)


def baseline(problem: str, seq_len: int) -> float:
    """The memoryless test loss: MSE 1/6 (adding), 10 ln 8 / (T + 20) (copy)."""
    return 1 / 6 if problem == "adding" else 10 * math.log(8) / (seq_len + 20)


def _run(entry: str, extras: dict) -> tuple:
    problem, cell, seq_len, *name = entry.split(":")
    workdir = os.path.join(_WORKDIR.value, entry.replace(":", "_"))
    done = os.path.join(workdir, "final_eval.json")
    if not os.path.exists(done):
        command = [
            sys.executable, "-m", "experiments.train",
            f"--config=experiments/configs/{problem}.py", f"--workdir={workdir}",
            f"--config.model.cell={cell}", f"--config.data.seq_len={seq_len}",
            "--config.time_budget_s=0", *(extras[name[0]].split() if name else []),
        ]  # fmt: skip
        print(" ".join(command), flush=True)
        subprocess.run(command, check=False)
    if not os.path.exists(done):
        return problem, cell, int(seq_len), entry, None
    with open(done, encoding="utf-8") as f:
        return problem, cell, int(seq_len), entry, json.load(f)


def table(results: list) -> str:
    lines = [
        "| problem | cell | T | test MSE / loss | baseline | copy recall | steps | s | steps/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for problem, cell, seq_len, entry, final in results:
        if final is None:
            lines.append(f"| {problem} | {entry} | {seq_len} | failed | | | | | |")
            continue
        value = final.get("mse", final["loss"])
        recall = f"{final['recall_accuracy']:.3f}" if "recall_accuracy" in final else ""
        label = cell if entry.count(":") == 2 else f"{cell} ({entry.split(':')[3]})"
        lines.append(
            f"| {problem} | {label} | {seq_len} | {value:.4f} | {baseline(problem, seq_len):.3f} | "
            f"{recall} | {final['step']} | {final['train_seconds']:.0f} | "
            f"{final['step'] / final['train_seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    extras = dict(e.split("=", 1) for e in _EXTRA.value)
    results = []
    for entry in _RUNS.value:
        results.append(_run(entry, extras))
        with open(_OUT.value, "w", encoding="utf-8") as f:
            f.write(table(results))
    print(table(results))


if __name__ == "__main__":
    app.run(main)
