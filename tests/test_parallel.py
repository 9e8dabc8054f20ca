"""Data-parallel helpers of rnnjax.training on one process: batches, shardings, cluster detection.

Runs on several devices and processes are in ``tests/test_multiprocess.py``.
"""

import os

import jax
import numpy as np
import pytest
from jax.sharding import AbstractMesh, AxisType
from jax.sharding import PartitionSpec as P

from rnnjax import training
from rnnjax.training import _distributed
from tests import _parallel_job as job


def _mesh(devices: int):
    return AbstractMesh((devices,), (training.DATA_AXIS,), axis_types=(AxisType.Auto,))


def test_per_device_batch_needs_a_multiple_of_the_devices():
    assert training.per_device_batch(12, _mesh(4)) == 3
    with pytest.raises(ValueError, match=r"batch_size must be a positive multiple of the 4 dev.*"
                       r"got 10; use e\.g\. 8 or 12"):  # fmt: skip
        training.per_device_batch(10, _mesh(4))
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="batch_size must be"):
            training.per_device_batch(bad, _mesh(2))


def test_one_device_rows_and_global_batch():
    mesh = training.make_mesh()
    np.testing.assert_array_equal(training.process_batch_rows(4, mesh), np.arange(4))
    local = {"x": np.arange(12.0).reshape(4, 3), "flag": np.bool_(True)}
    batch = training.make_global_batch(local, mesh, 4)
    np.testing.assert_array_equal(np.asarray(batch["x"]), local["x"])
    assert batch["flag"].shape == () and batch["x"].sharding.spec == P("data")
    with pytest.raises(ValueError, match=r"local_batch\['x'\] must have this process's 4 rows"):
        training.make_global_batch({"x": np.zeros((3, 2))}, mesh, 4)


def test_batch_axis_sharding_finds_the_axis_that_grows():
    mesh = training.make_mesh()
    layer = job.make_layer("scan")
    shardings = training.batch_axis_sharding(layer.initial_state, 4, mesh)
    assert [s.spec for s in jax.tree.leaves(shardings)] == [P(None, "data")] * 2  # [L, B, H]
    with pytest.raises(ValueError, match=r"axes \[0, 1\] all grow with the batch size"):
        training.batch_axis_sharding(lambda b: np.zeros((b, b)), 4, mesh)
    fixed = training.batch_axis_sharding(lambda b: np.zeros((3,)), 4, mesh)
    assert fixed.spec == P()


@pytest.mark.parametrize(
    "env, method, kwargs",
    [
        ({}, "single", None),
        ({"SLURM_STEP_NODELIST": "n[1-2]", "SLURM_STEP_NUM_TASKS": "8"}, "slurm", {}),
        ({"SLURM_STEP_NODELIST": "n1", "SLURM_STEP_NUM_TASKS": "1"}, "single", None),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "JOB_COMPLETION_INDEX": "3"}, "kubernetes", {}),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "single", None),
        ({"TPU_WORKER_HOSTNAMES": "t0,t1"}, "tpu", {}),
        ({"RNNJAX_DISTRIBUTED": "auto"}, "auto", {}),
        (
            {"RNNJAX_DISTRIBUTED": "0", "SLURM_STEP_NODELIST": "n1", "SLURM_STEP_NUM_TASKS": "2"},
            "single",
            None,
        ),  # fmt: skip
        (
            {"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"},
            "env",
            {"coordinator_address": "h:1", "num_processes": 2, "process_id": 1},
        ),
    ],
)
def test_initialization_follows_the_environment(monkeypatch, env, method, kwargs):
    for name in list(os.environ):
        if name.startswith(("JAX_", "SLURM_", "TPU_", "KUBERNETES_", "OMPI_", "RNNJAX_DIST")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    assert training.maybe_initialize_distributed(heartbeat_timeout_s=7) == method
    if kwargs is None:
        assert calls == []
    else:
        (call,) = calls
        assert call["heartbeat_timeout_seconds"] == 7
        assert {k: call[k] for k in kwargs} == kwargs
        if method == "slurm":
            assert call["cluster_detection_method"] == "slurm"


def test_initialization_rejects_partial_or_bad_arguments(monkeypatch):
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: pytest.fail("initialized"))
    with pytest.raises(ValueError, match="together.*process_id missing"):
        training.maybe_initialize_distributed("h:1", 2)
    with pytest.raises(ValueError, match=r"process_id must lie in \[0, 2\), got 2"):
        training.maybe_initialize_distributed("h:1", 2, 2)
    monkeypatch.setenv("RNNJAX_DISTRIBUTED", "yes")
    with pytest.raises(ValueError, match="RNNJAX_DISTRIBUTED must be 'auto' or '0'"):
        training.maybe_initialize_distributed()
    monkeypatch.setenv("RNNJAX_DISTRIBUTED", "")
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "h:1")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES must be set to a non-negative"):
        _distributed.maybe_initialize_distributed()
