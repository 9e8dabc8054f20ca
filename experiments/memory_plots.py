r"""Vanishing and exploding gradients made visible: three PNGs for the README.

  nice -n 5 python -m experiments.memory_plots --sweep=workdirs/memory --out=experiments/results

- ``grad_through_time.png``: ||dL/dh_t|| of the adding problem (T = 100, the test set's first 64
  sequences) for the tanh RNN, IRNN, LSTM and GRU at initialisation and after training (the
  checkpoints of ``experiments/memory_sweep.py``'s runs in ``--sweep``, where present).
- ``lstm_horizon.png``: the LSTM at initialisation at T = 400, default biases against forget
  bias 1 and 3 and chrono initialisation (T_max = 100 and 400): how far back the gradient reaches.
- ``clipping.png``: a relu RNN with identity recurrent weights (IRNN) trained by plain SGD on the
  adding problem (T = 100), without clipping (it diverges: the trainer's non-finite guard counts
  the skipped steps) and with ``grad_clip_norm`` = 1 (it trains).

Prints the numbers behind each figure (a markdown table on stdout).
"""

import os

import jax
import matplotlib
import numpy as np
import optax
from absl import app, flags

from experiments.configs import adding
from experiments.run_state import restore_model
from experiments.tasks import memory
from rnnjax import diagnostics, training

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_SWEEP = flags.DEFINE_string("sweep", "workdirs/memory", "memory_sweep's --workdir.")
_OUT = flags.DEFINE_string("out", "experiments/results", "Folder of the PNGs.")
_SGD_STEPS = flags.DEFINE_integer("sgd_steps", 300, "Steps of each SGD run of clipping.png.")

CELLS = ("rnn", "irnn", "lstm", "gru")


def _config(cell: str, seq_len: int, **model):
    config = adding.get_config()
    config.model.cell = cell
    config.data.seq_len = seq_len
    for name, value in model.items():
        config.model[name] = value
    return config


def _profile(config, params=None, model=None):
    """||dL/dh_t|| ``[T]`` of the first 64 test sequences (initialisation when ``params`` is None),
    in float64: float32 underflows to 0 where a tanh RNN's gradient has vanished."""
    data = memory.load_data(config, None)
    model = model or memory.build_model(config, data)
    if params is None:
        params = model.init(jax.random.PRNGKey(config.seed))
    config.diagnostics_batch = 64
    with jax.enable_x64(True):
        params = jax.tree.map(lambda p: np.asarray(p, np.float64), params)
        layer, layer_params, x, loss = memory.diagnostics_probe(config, model, data, params)
        norms = diagnostics.gradient_norms_through_time(layer, layer_params, x, loss)
        return np.asarray(norms[0])


def grad_through_time(out: str) -> list:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    rows = []
    for cell in CELLS:
        config = _config(cell, 100)
        init = _profile(config)
        axes[0].semilogy(init, label=cell)
        workdir = os.path.join(_SWEEP.value, f"adding_{cell}_100")
        trained = None
        if os.path.isdir(os.path.join(workdir, "checkpoints")):
            model, params = restore_model(config, workdir, memory, None)
            trained = _profile(config, params, model)
            axes[1].semilogy(trained, label=cell)
        rows.append((cell, init, trained))
    for ax, title in zip(axes, ("at initialisation", "after training (5,000 steps)"), strict=True):
        ax.set(title=f"adding, T=100: {title}", xlabel="step t")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("||dL/dh_t||")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "grad_through_time.png"), dpi=80)
    return rows


def lstm_horizon(out: str) -> list:
    variants = {
        "default": {},
        "forget bias 1": {"forget_bias": 1.0},
        "forget bias 3": {"forget_bias": 3.0},
        "chrono 100": {"chrono_init": 100},
        "chrono 400": {"chrono_init": 400},
    }
    fig, ax = plt.subplots(figsize=(6, 3.4))
    rows = []
    for name, model in variants.items():
        norms = _profile(_config("lstm", 400, **model))
        ax.semilogy(norms, label=name)
        rows.append((name, norms))
    ax.set(title="LSTM at initialisation, adding T=400", xlabel="step t", ylabel="||dL/dh_t||")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "lstm_horizon.png"), dpi=80)
    return rows


def _sgd_run(clip: float, steps: int):
    """Plain SGD (lr 0.01) on the IRNN; ``clip`` = inf for none. Returns losses, non-finite."""
    config = _config("irnn", 100)
    model = memory.build_model(config, None)
    optimizer = training.make_optimizer(optax.sgd(1e-2), clip)
    params = model.init(jax.random.PRNGKey(0))
    state = training.create_train_state(params, optimizer, jax.random.PRNGKey(1))
    step = training.make_train_step(memory.make_loss_fn(config, model), optimizer, max_norm=clip)
    losses = []
    for t in range(steps):
        state, metrics = step(state, memory.train_batch(config, None, t))
        losses.append(float(metrics["loss"]))
    return np.array(losses), int(state.nonfinite_total)


def clipping(out: str) -> list:
    fig, ax = plt.subplots(figsize=(6, 3.4))
    rows = []
    for name, clip in (("no clipping", float(np.finfo(np.float32).max)), ("clip at 1", 1.0)):
        losses, nonfinite = _sgd_run(clip, _SGD_STEPS.value)
        shown = np.where(np.isfinite(losses), losses, np.nan)
        ax.semilogy(shown, marker=".", ms=3, label=f"{name}: {nonfinite} non-finite steps")
        rows.append((name, losses, nonfinite))
    ax.axhline(1 / 6, color="grey", ls=":", label="predict the mean")
    ax.set(title="IRNN, SGD lr 0.01, adding T=100", xlabel="step", ylabel="train MSE")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "clipping.png"), dpi=80)
    return rows


def main(argv):
    del argv
    os.makedirs(_OUT.value, exist_ok=True)
    print("| cell | ||dL/dh_0|| / ||dL/dh_99|| at init | after training |\n|---|---|---|")
    for cell, init, trained in grad_through_time(_OUT.value):
        after = "" if trained is None else f"{trained[0] / trained[-1]:.2e}"
        print(f"| {cell} | {init[0] / init[-1]:.2e} | {after} |")
    print("\n| LSTM init | ||dL/dh_t|| / ||dL/dh_399|| at t = 0, 200, 350 |\n|---|---|")
    for name, norms in lstm_horizon(_OUT.value):
        print(
            f"| {name} | " + ", ".join(f"{norms[t] / norms[-1]:.2e}" for t in (0, 200, 350)) + " |"
        )
    print("\n| SGD | non-finite steps | train MSE: first / last 20 finite steps |\n|---|---|---|")
    for name, losses, nonfinite in clipping(_OUT.value):
        finite = losses[np.isfinite(losses)]
        first, last = np.mean(finite[:20]), np.mean(finite[-20:])
        print(f"| {name} | {nonfinite} | {first:.4g} / {last:.4g} |")


if __name__ == "__main__":
    jax.config.update("jax_default_matmul_precision", "highest")
    app.run(main)
