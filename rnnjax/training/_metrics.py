"""Metric outputs of a run: ``metrics.jsonl``, TensorBoard event files, one console line."""

import json
import math
import os
import sys
import time


def _import_tensorboardx():
    """tensorboardX, without the ``import torch`` it tries at import time only to accept torch
    tensors (rnnjax logs floats): where torch is installed that import cost every run 1.4 s of
    start-up and a few hundred MB. A torch imported before is used as it is."""
    if "torch" in sys.modules:
        import tensorboardX
    else:
        sys.modules["torch"] = None  # makes `import torch` raise ImportError, which it handles
        try:
            import tensorboardX
        finally:
            del sys.modules["torch"]
    return tensorboardX


tensorboardX = _import_tensorboardx()


class MetricWriter:
    """Writes each logging step's metrics to ``<workdir>/metrics.jsonl`` and TensorBoard.

    ``metrics.jsonl`` holds one JSON object per line with ``step``, ``split`` and the metrics;
    after a resume, steps already logged by the interrupted run appear again (readers keep the last
    line of each (split, step)). TensorBoard files go to ``<workdir>/tensorboard/<split>`` through
    tensorboardX, which needs no TensorFlow.
    """

    def __init__(self, workdir: str):
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8")
        self._logdir = os.path.join(workdir, "tensorboard")
        self._boards = {}

    def write(self, step: int, split: str, metrics: dict) -> None:
        """Appends ``{"step", "split", **metrics}`` (floats) and flushes."""
        values = {name: float(value) for name, value in metrics.items()}
        self._jsonl.write(json.dumps({"step": int(step), "split": split, **values}) + "\n")
        self._jsonl.flush()
        if split not in self._boards:
            self._boards[split] = tensorboardX.SummaryWriter(os.path.join(self._logdir, split))
        for name, value in values.items():
            self._boards[split].add_scalar(name, value, int(step))
        self._boards[split].flush()

    def write_text(self, step: int, tag: str, text: str) -> None:
        """Records text (e.g. a model sample) in TensorBoard."""
        board = self._boards.setdefault(
            "train", tensorboardX.SummaryWriter(os.path.join(self._logdir, "train"))
        )
        board.add_text(tag, text, int(step))

    def close(self) -> None:
        self._jsonl.close()
        for board in self._boards.values():
            board.close()


class Throughput:
    """Steps/s, tokens/s and ETA since the previous ``measure`` call (wall clock)."""

    def __init__(self, step: int, num_steps: int, tokens_per_step: int):
        self._step, self._time = step, time.perf_counter()
        self._num_steps, self._tokens_per_step = num_steps, tokens_per_step

    def restart(self, step: int) -> None:
        """Starts the next measurement now, e.g. to leave an evaluation out of the rate."""
        self._step, self._time = step, time.perf_counter()

    def measure(self, step: int) -> dict:
        now = time.perf_counter()
        rate = (step - self._step) / max(now - self._time, 1e-9)
        self._step, self._time = step, now
        return {
            "steps_per_sec": rate,
            "tokens_per_sec": rate * self._tokens_per_step,
            "eta_sec": (self._num_steps - step) / rate if rate > 0 else math.inf,
        }


def console_line(step: int, num_steps: int, metrics: dict) -> str:
    """``step 120/2000 | loss 2.3141 | 3.1 steps/s | 12,400 tok/s | ETA 10m05s`` and extras."""
    parts = [f"step {step}/{num_steps}", f"loss {metrics['loss']:.4f}"]
    if "grad_norm" in metrics:
        parts.append(f"grad_norm {metrics['grad_norm']:.3f}")
    if "learning_rate" in metrics:
        parts.append(f"lr {metrics['learning_rate']:.2e}")
    if "steps_per_sec" in metrics:
        eta = metrics["eta_sec"]
        eta = "?" if not math.isfinite(eta) else f"{int(eta) // 60}m{int(eta) % 60:02d}s"
        parts += [
            f"{metrics['steps_per_sec']:.2f} steps/s",
            f"{metrics['tokens_per_sec']:,.0f} tok/s",
            f"ETA {eta}",
        ]
    return " | ".join(parts)
