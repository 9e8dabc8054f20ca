"""Multi-process runs: joining the cluster's processes, and stopping together on preemption.

``maybe_initialize_distributed`` calls ``jax.distributed.initialize`` when the process is one of
several (a SLURM step, a TPU pod slice, a Kubernetes indexed Job or JobSet, ``launch/local.py``),
before anything touches a device; a lone process is left alone. ``PreemptionSync`` tells every
process to stop at the same step when any of them receives SIGTERM, so that no process is left
waiting in a collective (or in orbax's save) for a peer that has already left.
"""

import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from rnnjax.training._checkpoint import PreemptionFlag

# Set by launch/local.py, or by hand on any cluster: jax.distributed.initialize reads the first.
_ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
_ENV_COUNT = "JAX_NUM_PROCESSES"
_ENV_ID = "JAX_PROCESS_ID"
# "auto": let JAX detect the cluster (TPU VM metadata, Open MPI, ...); "0": never initialize.
_ENV_SWITCH = "RNNJAX_DISTRIBUTED"


def _detect() -> str | None:
    """The cluster this process runs in, from environment variables only (no device, no network)."""
    env = os.environ
    switch = env.get(_ENV_SWITCH, "").lower()
    if switch in ("0", "off", "false", "no"):
        return None
    if switch == "auto":
        return "auto"
    if switch:
        raise ValueError(f"{_ENV_SWITCH} must be 'auto' or '0' when set, got {env[_ENV_SWITCH]!r}")
    if _ENV_COORDINATOR in env:
        return "env"
    # Inside an srun step of several tasks (sbatch's own shell has no STEP variables).
    if "SLURM_STEP_NODELIST" in env and int(env.get("SLURM_STEP_NUM_TASKS", "1")) > 1:
        return "slurm"
    if "KUBERNETES_SERVICE_HOST" in env and "JOB_COMPLETION_INDEX" in env:
        return "kubernetes"  # an indexed Job or a JobSet: JAX reads the pods through the API
    if "," in env.get("TPU_WORKER_HOSTNAMES", "") or "MEGASCALE_COORDINATOR_ADDRESS" in env:
        return "tpu"
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        return "openmpi"
    return None


def maybe_initialize_distributed(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    heartbeat_timeout_s: int | None = None,
    initialization_timeout_s: int = 300,
) -> str:
    """Joins the other processes of a multi-process job, if this is one; call it first thing.

    Explicit arguments win; otherwise the environment decides: ``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (``launch/local.py`` sets them), an ``srun``
    step of several tasks (SLURM; ``JAX_COORDINATOR_PORT`` sets the port), a Kubernetes indexed
    Job or JobSet (JAX reads the pods, which needs ``jax[k8s]`` and a service account allowed to
    list them), a multi-host TPU slice, Open MPI. ``RNNJAX_DISTRIBUTED=auto`` leaves detection to
    JAX (TPU VMs, whose workers are found through the metadata server); ``RNNJAX_DISTRIBUTED=0``
    turns all of this off.

    Args:
      coordinator: ``host:port`` of process 0's coordination service.
      num_processes: the number of processes of the job.
      process_id: this process's index in ``[0, num_processes)``.
      heartbeat_timeout_s: a process that has not been heard from for this long is declared dead
        and every other process exits with an error (JAX's default, 100 s, when None).
      initialization_timeout_s: how long to wait for every process to join.

    Returns:
      How the processes were found: ``"explicit"``, ``"env"``, ``"slurm"``, ``"kubernetes"``,
      ``"tpu"``, ``"openmpi"``, ``"auto"``, ``"already"`` (initialized before) or ``"single"``
      (a lone process: nothing done).
    """
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    if any(v is not None for v in given.values()):
        missing = [name for name, v in given.items() if v is None]
        if missing:
            raise ValueError(
                f"maybe_initialize_distributed needs coordinator, num_processes and process_id "
                f"together, got {given} ({', '.join(missing)} missing)"
            )
        if not 0 <= process_id < num_processes:
            raise ValueError(f"process_id must lie in [0, {num_processes}), got {process_id}")
        method = "explicit"
    else:
        method = _detect()
    if jax.distributed.is_initialized():
        return "already"
    if method is None or (method == "explicit" and num_processes == 1):
        return "single"
    kwargs = {"initialization_timeout": initialization_timeout_s}
    if heartbeat_timeout_s is not None:
        kwargs["heartbeat_timeout_seconds"] = heartbeat_timeout_s
    if method == "explicit":
        kwargs.update(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
        )
    elif method == "env":
        kwargs.update(
            coordinator_address=os.environ[_ENV_COORDINATOR],
            num_processes=_env_int(_ENV_COUNT),
            process_id=_env_int(_ENV_ID),
        )
    elif method == "slurm":
        kwargs["cluster_detection_method"] = "slurm"
    jax.distributed.initialize(**kwargs)
    return method


def _env_int(name: str) -> int:
    value = os.environ.get(name, "")
    if not value.isdigit():
        raise ValueError(
            f"{name} must be set to a non-negative integer along with {_ENV_COORDINATOR}, "
            f"got {value!r}"
        )
    return int(value)


def is_main_process() -> bool:
    """Whether this is process 0, the one that writes metrics, TensorBoard and samples."""
    return jax.process_index() == 0


class PreemptionSync:
    """Tells every process to stop at the same step once any of them receives SIGTERM.

    Under ``jax.distributed`` it uses JAX's preemption sync point: the coordination service
    notices a SIGTERM on any process and picks a step that every process has yet to reach (no
    collective per step: ``reached(step)`` is a local check until then). A lone process stops at
    the first step after its own SIGTERM (``PreemptionFlag``). Use as a context manager around
    the loop, and call ``reached(step)`` after every step with the same steps on every process.
    """

    def __init__(self):
        self._flag = None

    def __enter__(self):
        # Under jax.distributed the coordination service's SIGTERM handler must stay installed.
        if not jax.distributed.is_initialized():
            self._flag = PreemptionFlag().__enter__()
        return self

    def __exit__(self, *exc):
        if self._flag is not None:
            self._flag.__exit__(*exc)
            self._flag = None
        return False

    def reached(self, step: int) -> bool:
        """True at the step where every process should save a checkpoint and exit."""
        if self._flag is not None:
            return self._flag.requested
        return multihost_utils.reached_preemption_sync_point(step)


def barrier(name: str) -> None:
    """Waits until every process has reached ``barrier(name)`` (nothing to wait for alone).

    For files one process writes and the others read: process 0 writes, all meet, all read.
    """
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def agree(flag: bool) -> bool:
    """Process 0's ``flag`` on every process: one decision where the processes could differ
    (a time budget measured on each host's clock). A collective when there are several."""
    if jax.process_count() == 1:
        return bool(flag)
    return bool(multihost_utils.broadcast_one_to_all(np.bool_(flag)))
