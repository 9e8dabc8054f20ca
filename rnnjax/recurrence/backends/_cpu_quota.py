"""The CPUs this process may use: its affinity mask and its cgroup's CPU quota (v1 and v2).

The native kernels size their thread teams by it (``_native.threads_for``): a container limited to
2 CPUs on a 64-core host must get 2 threads, not 64.
"""

import functools
import math
import os


@functools.cache
def allowed_cpus() -> int:
    """The CPUs this process may use: its affinity mask, and its cgroup's CPU quota where one is
    set (a container limited to 2 CPUs on a 64-core host gets 2 threads, not 64)."""
    if hasattr(os, "sched_getaffinity"):
        cpus = len(os.sched_getaffinity(0))
    else:
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return max(1, cpus if quota is None else min(cpus, quota))


def cgroup_cpu_quota(root: str = "/sys/fs/cgroup", membership: str = "/proc/self/cgroup"):
    """CPUs allowed by the CPU quota of this process's cgroup and its ancestors, rounded up, or
    None where no quota is set (or none can be read). cgroup v2: ``cpu.max`` ("quota period" or
    "max period"); v1: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (-1: no quota)."""
    try:
        with open(membership) as lines:
            groups = [line.rstrip("\n").split(":", 2) for line in lines]
    except OSError:
        return None
    limits = []
    for _, controllers, path in (g for g in groups if len(g) == 3):
        if controllers == "":  # v2
            for directory in _ancestors(root, path):
                limits.append(_v2_limit(os.path.join(directory, "cpu.max")))
        elif "cpu" in controllers.split(","):  # v1
            for mount in (os.path.join(root, controllers), os.path.join(root, "cpu")):
                for directory in _ancestors(mount, path):
                    limits.append(_v1_limit(directory))
    limits = [limit for limit in limits if limit is not None]
    return min(limits) if limits else None


def _ancestors(mount: str, path: str) -> list[str]:
    """``mount/path`` and each directory above it up to ``mount``."""
    parts = [part for part in path.split("/") if part]
    return [os.path.join(mount, *parts[:n]) for n in range(len(parts), -1, -1)]


def _read(path: str) -> str | None:
    try:
        with open(path) as file:
            return file.read().strip()
    except OSError:
        return None


def _cpus_of(quota: float, period: float) -> int | None:
    return None if quota <= 0 or period <= 0 else max(1, math.ceil(quota / period))


def _v2_limit(path: str) -> int | None:
    fields = (_read(path) or "").split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        return _cpus_of(float(fields[0]), float(fields[1]))
    except ValueError:
        return None


def _v1_limit(directory: str) -> int | None:
    quota = _read(os.path.join(directory, "cpu.cfs_quota_us"))
    period = _read(os.path.join(directory, "cpu.cfs_period_us"))
    try:
        return _cpus_of(float(quota), float(period))
    except (TypeError, ValueError):
        return None
