"""Strict JAX settings for every test: implicit rank promotion is a bug in this codebase.

Matmuls run at full float32 precision: on GPUs JAX's default is TF32 (about 1e-3 relative), and
the tests compare implementations of the same float32 arithmetic.

Compiled programs go to one persistent compilation cache per test run (a fresh directory, removed
at the end), shared by the xdist workers and the subprocesses the tests start: a resumed or
relaunched experiment, or another worker, loads what an earlier one compiled instead of
compiling it again (the kill-and-resume test of the classifier ran in 74 s instead of 109 s).

XLA:CPU's LLVM backend optimises at level 0 in the tests and their jobs (``TEST_XLA_FLAGS``):
most of a test's time is compiling many small programs once, and the same tests ran 20-25%
faster that way (2 cores, 2026-12-03). The HLO is optimised as usual and LLVM's levels do not
reorder float arithmetic, so the values under test are the same programs'; benchmarks and
experiments run at the default level.
"""

import os
import shutil
import tempfile

# Before jax is imported: the xdist workers and the tests' subprocesses inherit the environment.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
if TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", "").split():
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE and "PYTEST_XDIST_WORKER" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="rnnjax-tests-jax-cache-")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")


def pytest_unconfigure(config):
    if _OWN_CACHE and not hasattr(config, "workerinput"):  # the run's own directory, once
        shutil.rmtree(os.environ.pop("JAX_COMPILATION_CACHE_DIR", ""), ignore_errors=True)
