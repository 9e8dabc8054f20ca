"""Data parallelism against a plain one-device run: fake CPU devices, several local processes.

Runs of ``tests/_parallel_job.py`` on 4 devices (one process, or two of two devices through
``launch.local``) must reproduce the losses and parameters of ``reference`` (one device, no
mesh) within float32 reduction-order noise: the gradient's mean is summed in another order
(per-device partial sums, then the all-reduce), about 1e-7 relative per step, which Adam carries
into the parameters. Stated tolerance: 2e-5 relative on losses, 2e-5 absolute on parameters.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from rnnjax import training
from tests import _parallel_job as job
from tests._job_env import job_env, xla_flags_with_devices

ROOT = pathlib.Path(__file__).resolve().parents[1]
LOSS_RTOL, PARAM_ATOL = 2e-5, 2e-5


def _env(devices: int | None) -> dict:
    env = job_env(JAX_PLATFORMS="cpu")
    if devices:
        env["XLA_FLAGS"] = xla_flags_with_devices(devices)
    return env


def _run(args, *, devices=None, processes=0, timeout=120):
    """Runs the job alone (``processes=0``) or under ``launch.local`` with ``processes``."""
    command = [sys.executable, "-m", "tests._parallel_job", *args]
    if processes:
        launcher = [sys.executable, "-m", "launch.local", "-n", str(processes)]
        command = [*launcher, "--cpu-devices", str(devices), "--grace", "3", "--", *command]
        devices = None
    # A hung job (a process waiting on a dead peer) fails the test with TimeoutExpired.
    return subprocess.run(
        command, cwd=ROOT, env=_env(devices), capture_output=True, text=True, timeout=timeout
    )


def _losses(workdir) -> dict:
    lines = (pathlib.Path(workdir) / "losses.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines)}  # a resumed step overwrites


def _check_losses(workdir, expected, steps):
    got = _losses(workdir)
    np.testing.assert_allclose(
        [got[s] for s in steps], [expected[s - 1] for s in steps], rtol=LOSS_RTOL
    )


def _reference(schedule):
    """Losses and parameters of one device, ``schedule`` a list of (backend, steps)."""
    losses, params = [], None
    state = None
    for backend, count in schedule:
        layer, optimizer = job.make_layer(backend), job.make_optimizer()
        step_fn = job.training.make_train_step(job.make_loss_fn(layer), optimizer, max_norm=1.0)
        state = job.initial_state(layer, optimizer) if state is None else state
        for _ in range(count):
            state, metrics = step_fn(state, job.batch_at(len(losses)))
            losses.append(float(metrics["loss"]))
    params = [np.asarray(a) for a in jax.tree.leaves(state.params)]
    return losses, params


def _tail(done) -> str:
    return (done.stdout + done.stderr)[-3000:]


@pytest.mark.skipif(sys.platform != "linux", reason="fake CPU devices and process groups")
def test_processes_devices_checkpoints_preemption_and_failure(tmp_path):
    """One workdir through four runs: 2 processes x 2 devices (SIGTERM on one host), then 1 x 4
    (resumes the 2-process checkpoint), then 2 x 2 (resumes the 1-process one) until process 1
    is killed, then a rerun on 1 device that resumes and finishes: every loss and the final
    parameters equal one uninterrupted one-device run."""
    w = str(tmp_path / "w")
    # 1. SIGTERM reaches only the last process: both must stop at the same step and save.
    done = _run([f"--workdir={w}", "--steps=50", "--sigterm-at=2"], devices=2, processes=2)
    assert done.returncode == 128 + signal.SIGTERM, _tail(done)
    stopped = [line for line in done.stdout.splitlines() if "preempted at step" in line]
    assert len(stopped) == 2, _tail(done)  # both processes, at one step
    assert len({line.split()[-1] for line in stopped}) == 1, stopped
    s = int(stopped[0].split()[-1])
    assert 3 <= s < 50
    assert training.Checkpointer(os.path.join(w, "checkpoints"), 10).latest_step == s

    # 2. One process with 4 devices, the native backend, resumes the 2-process checkpoint. First
    # a native layer alone: split over the devices by shard_map, not gathered (no all-gather in
    # the compiled program, per-device shapes in the kernel calls), same values and gradients.
    args = [f"--workdir={w}", f"--steps={s + 4}", "--backend=native", "--check-native"]
    done = _run(args, devices=4, processes=0)
    assert done.returncode == 0, _tail(done)
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("native split: ")]
    split = json.loads(line.removeprefix("native split: "))
    assert split["all_gathers"] == 0, split
    # The batch-first layer hands the kernels batch-major inputs: [B / 4, T, ...] per device.
    assert split["forward"] and all(
        shape.startswith(f"(f32[{job.B // 4},{job.T},") for shape in split["forward"]
    )
    assert split["max_error"] < 1e-5 and split["cudnn_max_error"] < 1e-5, split
    assert f"starting at step {s}" in done.stdout and "compilations: 1" in done.stdout
    assert "state shardings kept: True" in done.stdout

    # 3. Two processes resume the 1-process checkpoint; process 1 dies at step s + 7.
    args = [f"--workdir={w}", f"--steps={s + 10}", "--backend=native", "--checkpoint-every=2"]
    done = _run([*args, f"--die-at={s + 7}", "--heartbeat=10"], devices=2, processes=2)
    assert done.returncode == 128 + signal.SIGKILL, _tail(done)
    assert "process 1" in done.stderr and "killed by SIGKILL" in done.stderr, _tail(done)

    # 4. The rerun, on one device, resumes from the last checkpoint and finishes.
    done = _run([*args], devices=1)
    assert done.returncode == 0, _tail(done)
    last = 2 * ((s + 7) // 2)
    assert f"starting at step {last}" in done.stdout, _tail(done)

    expected, params = _reference([("scan", s), ("native", 10)])
    _check_losses(w, expected, range(1, s + 11))
    with np.load(os.path.join(w, "params.npz")) as saved:
        for i, want in enumerate(params):
            np.testing.assert_allclose(saved[str(i)], want, rtol=0, atol=PARAM_ATOL)


def test_scaling_benchmark_runs(tmp_path):
    out = tmp_path / "scaling.json"
    args = ["--devices=2", "--batch=4", "--seq-len=3", "--hidden=8", "--steps=1"]
    command = [sys.executable, "-m", "benchmarks.scaling", *args, "--repeats=1", f"--json={out}"]
    done = subprocess.run(command, cwd=ROOT, env=_env(None), capture_output=True, text=True)
    assert done.returncode == 0, _tail(done)
    result = json.loads(out.read_text())
    assert [(r["devices"], r["per_device_batch"]) for r in result["rows"]] == [(2, 2)]
    assert all(r["tokens_per_s"] > 0 for r in result["rows"])
