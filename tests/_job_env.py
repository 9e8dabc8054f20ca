"""The environment of a job that a test starts as a subprocess."""

import os

from launch.local import with_cpu_devices

# The test run's compilation cache (conftest.py): kept, unlike the other JAX settings.
_CACHE = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")


def job_env(**settings) -> dict:
    """``os.environ`` without the JAX, SLURM and TPU settings of this process (a job sets its
    own), except the run's compilation cache, plus ``settings``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k in _CACHE or not k.startswith(("JAX_", "SLURM_", "TPU_"))
    }
    return {**env, **settings}


def xla_flags_with_devices(devices: int) -> str:
    """This process's XLA flags (the tests' settings, conftest.py) and ``devices`` CPU devices."""
    return with_cpu_devices(os.environ.get("XLA_FLAGS", ""), devices)
