"""RNNJAX_NATIVE_PROFILE: the native kernels' per-thread phase times (``csrc/profile.h``).

A profile must describe the call that ran (kernel, shape, threads), account for the call's time
without inventing any (the phases of a rank add up to at most the call's wall time, and the work
phases that ran are non-zero), and leave the numbers the kernels compute unchanged.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnjax import cells
from rnnjax.recurrence._unroll import scan_time_major
from rnnjax.recurrence.backends import _native

pytestmark = pytest.mark.skipif(
    not _native.available() or jax.default_backend() != "cpu",
    reason=f"the native backend runs on CPU: {_native.unavailable_reason() or 'JAX is not on CPU'}",
)

STEPS, BATCH, INPUTS, HIDDEN = 40, 4, 3, 32
PHASES = ("setup", "input", "product", "gates", "weights", "wait")  # csrc/profile.h


def _read(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture
def two_threads(monkeypatch):
    monkeypatch.setattr(_native, "allowed_cpus", lambda: 2)
    monkeypatch.setenv("RNNJAX_NATIVE_THREADS", "2")


def _value_and_grad(cell):
    params = cell.init(jax.random.key(0), INPUTS)
    xs = jax.random.normal(jax.random.key(1), (STEPS, BATCH, INPUTS))
    s0 = jax.tree.map(lambda s: jnp.zeros((BATCH,) + s.shape), cell.initial_state())

    def loss(p):
        outputs, _ = scan_time_major(cell, p, xs, s0, backend="native")
        return jnp.sum(jnp.sin(outputs))

    # Not jitted, so that each call of this function runs the kernels again.
    return jax.value_and_grad(loss)(params)


@pytest.mark.parametrize(
    "cell, gates",
    [(cells.LSTMCell(HIDDEN), 4), (cells.GRUCell(HIDDEN, reset_after=False), 3)],
    ids=["lstm", "gru_reset_before"],
)
def test_a_training_step_writes_one_line_per_kernel_call(
    cell, gates, two_threads, monkeypatch, tmp_path
):
    path = tmp_path / "profile.jsonl"
    monkeypatch.setenv("RNNJAX_NATIVE_PROFILE", str(path))
    _value_and_grad(cell)
    calls = _read(path)
    assert [c["kernel"] for c in calls] == ["forward", "backward"]
    for call in calls:
        assert (call["T"], call["B"], call["I"], call["H"], call["G"]) == (
            STEPS,
            BATCH,
            INPUTS,
            HIDDEN,
            gates,
        )
        assert call["threads"] == 2 and len(call["ranks"]) == 2
        assert call["keep"] is True  # the forward of a gradient keeps its activations
        for rank in call["ranks"]:
            phases = [rank[f"{p}_ms"] for p in PHASES]
            assert min(phases) >= 0
            assert sum(phases) <= call["wall_ms"] * 1.001 + 1e-3
            assert rank["product_ms"] > 0 and rank["gates_ms"] > 0
    forward, backward = calls
    assert all(r["input_ms"] > 0 and r["weights_ms"] == 0 for r in forward["ranks"])
    assert all(r["weights_ms"] > 0 and r["input_ms"] == 0 for r in backward["ranks"])


def test_the_profile_changes_no_number_and_stops_when_unset(two_threads, monkeypatch, tmp_path):
    cell = cells.GRUCell(HIDDEN)
    path = tmp_path / "profile.jsonl"
    plain = _value_and_grad(cell)
    monkeypatch.setenv("RNNJAX_NATIVE_PROFILE", str(path))
    profiled = _value_and_grad(cell)
    jax.tree.map(np.testing.assert_array_equal, profiled, plain)
    lines = len(_read(path))
    assert lines == 2
    monkeypatch.setenv("RNNJAX_NATIVE_PROFILE", "")  # empty: off, like unset
    _value_and_grad(cell)
    monkeypatch.delenv("RNNJAX_NATIVE_PROFILE")
    _value_and_grad(cell)
    assert len(_read(path)) == lines


def test_an_unwritable_path_does_not_fail_the_computation(two_threads, monkeypatch, tmp_path):
    cell = cells.ElmanCell(HIDDEN)
    plain = _value_and_grad(cell)
    monkeypatch.setenv("RNNJAX_NATIVE_PROFILE", str(tmp_path / "no such dir" / "p.jsonl"))
    jax.tree.map(np.testing.assert_array_equal, _value_and_grad(cell), plain)
