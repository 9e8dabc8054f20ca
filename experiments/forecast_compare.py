r"""The recurrent forecaster against persistence, seasonal naive and AR(p), on the same test points.

  python -m experiments.forecast_compare --workdir=workdirs/forecast

For each preset of ``experiments/configs/forecast.py`` (``airline``, ``temperatures``,
``sunspots``): trains ``config.ensemble`` seeds through the shared trainer (fixed steps) and
averages their forecasts, then computes the baselines from the same forecast origins of the test
part. The AR(p) baseline models the (logged, when the preset says so) series or its difference
at the preset's lag, whichever validates better, with its order chosen in
``1..data.max_ar_order`` on the validation part; like the network it is fitted on the training
part only. Writes ``<results>/forecast.md`` (RMSE,
MAE, MASE per method and series), ``forecast.json`` and ``forecast_<preset>.png`` (the test part:
actual, the network, the best baseline). Finished runs are kept: rerunning skips their training.
"""

import dataclasses
import json
import os

import matplotlib
import numpy as np
from absl import app, flags, logging

from experiments import config_cli, run_state, tasks, train
from experiments.configs import forecast as forecast_configs
from rnnjax import data, models

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_PRESETS = flags.DEFINE_list("presets", ["airline", "temperatures", "sunspots"], "Presets to run.")
_RESULTS = flags.DEFINE_string("results", "experiments/results", "Folder of the table and PNGs.")
_NO_BUDGET = flags.DEFINE_bool(
    "no_time_budget", False, "Run every step (time_budget_s=0): same seed, same result."
)


def baselines(config, d, at: np.ndarray) -> dict:
    """``{name: [M, K] forecasts}`` of the baselines from the origins ``at``."""
    c, k = config.data, config.data.horizon
    out = {"persistence": models.persistence(d.actual, at, k)}
    if c.season:
        out[f"seasonal naive ({c.season})"] = models.seasonal_naive(d.actual, at, k, c.season)
    ar, name = _best_ar(config, d, at)
    out[name] = ar
    return out


def _best_ar(config, d, at: np.ndarray) -> tuple:
    """AR(p) on the (logged) level or on the network's differenced target, whichever with its
    best order has the lower validation RMSE; returns ``(forecasts from at, name)``."""
    task = tasks.get("forecast")
    best = None
    for lag in sorted({0, config.data.difference}):
        c = config.copy_and_resolve_references()
        c.data.difference = lag
        shifted = d.level[lag:] - d.level[:-lag] if lag else d.level  # starts at step lag
        # undo_transform reads unscaled changes through an identity scaler
        dl = dataclasses.replace(d, scaler=data.Scaler(np.zeros(1), np.ones(1)), first=lag)
        fit_stop, valid_at = d.split.valid_start - lag, task.valid_origins(c, dl)
        order = models.choose_ar_order(shifted, c.data.max_ar_order, fit_stop, valid_at - lag,
                                       c.data.horizon)  # fmt: skip
        ar = models.fit_ar(shifted, order, fit_stop)

        def predict(origins, ar=ar, c=c, dl=dl, lag=lag, shifted=shifted):
            changes = models.ar_forecast(ar, shifted, origins - lag, c.data.horizon)
            return task.undo_transform(c, dl, d.level, origins, changes)

        error = models.rmse(predict(valid_at), task.targets(c, dl, valid_at))
        name = f"AR({order})" + (f" of the lag-{lag} difference" if lag else "")
        if best is None or error < best[0]:
            best = (error, predict(at), name)
    return best[1], best[2]


def network_forecast(config, workdir: str) -> tuple:
    """Trains (or reuses) ``config.ensemble`` seeds; returns ``(data, origins, mean forecast,
    seconds of training, steps)``."""
    task = tasks.get("forecast")
    runs, seconds, steps = [], 0.0, 0
    for i in range(config.ensemble):
        c = config.copy_and_resolve_references()
        c.seed = config.seed + i
        run_dir = os.path.join(workdir, f"seed{c.seed}")
        final_file = os.path.join(run_dir, "final_eval.json")
        if not os.path.exists(final_file):
            train.train_and_evaluate(c, run_dir)
        with open(final_file, encoding="utf-8") as f:
            final = json.load(f)
        seconds += final["train_seconds"]
        steps += final["step"]
        d = task.load_data(c, run_dir)
        model, params = run_state.restore_model(c, run_dir, task, d)
        at = task.test_origins(c, d)
        runs.append(task.forecast(c, task.make_apply(model), params, d, at))
    return d, at, np.mean(runs, axis=0), seconds, steps


def compare(config, workdir: str) -> dict:
    """Metrics of the network and the baselines on the test part of ``config``'s series."""
    task = tasks.get("forecast")
    d, at, network, seconds, steps = network_forecast(config, workdir)
    actual = task.targets(config, d, at)
    name = f"{config.model.cell.upper()} (x{config.ensemble})"
    forecasts = {name: network, **baselines(config, d, at)}
    training = d.actual[: d.split.valid_start]
    rows = {
        method: {
            "rmse": models.rmse(f, actual),
            "mae": models.mae(f, actual),
            "mase": models.mase(f, actual, training, config.data.mase_season),
        }
        for method, f in forecasts.items()
    }
    return {
        "rows": rows,
        "forecasts": forecasts,
        "actual": actual,
        "origins": at,
        "train_seconds": seconds,
        "steps": steps,
        "network": name,
        "dates": np.asarray(d.dates) if d.dates is not None else None,
    }


def plot(preset: str, result: dict, path: str) -> None:
    """Actual test values, the network and the best baseline (by RMSE), first forecast step of
    each origin (one-step presets) or the one multi-step forecast."""
    rows = result["rows"]
    best = min((m for m in rows if m != result["network"]), key=lambda m: rows[m]["rmse"])
    at = result["origins"]
    if len(at) == 1:
        x, pick = at[0] + np.arange(result["actual"].shape[1]), lambda a: a[0]
    else:
        x, pick = at, lambda a: a[:, 0]
    if result["dates"] is not None:  # "1949-01" and "1981-01-01" both parse as days
        x = result["dates"][x].astype("datetime64[D]")
    fig, ax = plt.subplots(figsize=(8, 3), dpi=80)
    ax.plot(x, pick(result["actual"]), color="black", lw=1.2, label="actual")
    for method, style in ((result["network"], "C3"), (best, "C0")):
        label = f"{method} (RMSE {rows[method]['rmse']:.2f})"
        ax.plot(x, pick(result["forecasts"][method]), color=style, lw=0.9, label=label)
    kind = f"one {len(x)}-step forecast" if len(at) == 1 else "one step ahead"
    ax.set_title(f"{preset}: test part, {kind}, vs actual")
    ax.set_xlabel("date" if result["dates"] is not None else "time step")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def table(results: dict) -> str:
    lines = [
        "| series | method | RMSE | MAE | MASE |",
        "|---|---|---:|---:|---:|",
    ]
    for preset, result in results.items():
        for method, m in result["rows"].items():
            lines.append(
                f"| {preset} | {method} | {m['rmse']:.2f} | {m['mae']:.2f} | {m['mase']:.3f} |"
            )
    lines += ["", "| series | network training (all seeds) | steps (all seeds) |",
              "|---|---:|---:|"]  # fmt: skip
    for preset, result in results.items():
        lines.append(f"| {preset} | {result['train_seconds']:.0f} s | {result['steps']} |")
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    workdir = train._WORKDIR.value
    if not workdir:
        raise app.UsageError("--workdir is required")
    logging.set_verbosity(logging.INFO)
    os.makedirs(_RESULTS.value, exist_ok=True)
    results = {}
    for preset in _PRESETS.value:
        config = forecast_configs.get_config(preset)
        if _NO_BUDGET.value:
            config.time_budget_s = 0.0
        config_cli.validate(config)
        results[preset] = compare(config, os.path.join(workdir, preset))
        plot(preset, results[preset], os.path.join(_RESULTS.value, f"forecast_{preset}.png"))
        print(table({preset: results[preset]}))
    text = table(results)
    with open(os.path.join(_RESULTS.value, "forecast.md"), "w", encoding="utf-8") as f:
        f.write(text)
    summary = {p: {k: r[k] for k in ("rows", "train_seconds", "steps")} for p, r in results.items()}
    with open(os.path.join(_RESULTS.value, "forecast.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    print(text)


if __name__ == "__main__":
    app.run(main)
