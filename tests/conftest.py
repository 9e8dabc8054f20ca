"""Strict JAX settings for every test: implicit rank promotion is a bug in this codebase.

Matmuls run at full float32 precision: on GPUs JAX's default is TF32 (about 1e-3 relative), and
the tests compare implementations of the same float32 arithmetic.

Compiled programs go to one persistent compilation cache per test run (a fresh directory, removed
at the end), shared by the xdist workers and the subprocesses the tests start: a resumed or
relaunched experiment, or another worker, loads what an earlier one compiled instead of
compiling it again (the kill-and-resume test of the classifier ran in 74 s instead of 109 s).

XLA:CPU compiles for speed of compiling in the tests and their jobs (``TEST_XLA_FLAGS``): most
of a test's time is compiling many small programs once. LLVM optimises at level 0 (the same
tests ran 20-25% faster), fusions go through XLA's older elemental emitters instead of its
fusion emitters (the classifier's trainer started in 11.5 s instead of 17.8), and each module
is compiled in one piece, not split for parallel codegen (8% less). With the three, the suite
took 7.5 min instead of 11.8 (2 cores, 2026-12-03). The HLO is optimised as usual, so the tests
check the programs that users run, compiled by another LLVM pipeline: LLVM's levels reorder no
float arithmetic, but the two emitters may fuse a reduction differently (one ulp; see
tests/test_flax.py). Benchmarks and experiments run with XLA's defaults. A flag that a future
jaxlib no longer knows (XLA aborts on one) is dropped after a probe in a subprocess.
"""

import os
import shutil
import subprocess
import sys
import tempfile

# Before jax is imported: the xdist workers and the tests' subprocesses inherit the environment.
TEST_XLA_FLAGS = (
    "--xla_backend_optimization_level=0",
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_cpu_parallel_codegen_split_count=1",
)


def _known_to_xla(flags: list[str]) -> bool:
    probe = "import jax; jax.jit(lambda x: x + 1)(1.0)"
    env = {**os.environ, "XLA_FLAGS": " ".join(flags), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True)
    return done.returncode == 0


_CONTROLLER = "PYTEST_XDIST_WORKER" not in os.environ  # decides once for every xdist worker
if _CONTROLLER:
    _flags = os.environ.get("XLA_FLAGS", "").split()
    _added = [f for f in TEST_XLA_FLAGS if f not in _flags]
    if _added and not _known_to_xla([*_flags, *_added]):
        _added = [f for f in _added if _known_to_xla([*_flags, f])]
    os.environ["XLA_FLAGS"] = " ".join([*_flags, *_added])
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE and _CONTROLLER:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="rnnjax-tests-jax-cache-")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")


def pytest_unconfigure(config):
    if _OWN_CACHE and _CONTROLLER:  # the run's own directory, once
        shutil.rmtree(os.environ.pop("JAX_COMPILATION_CACHE_DIR", ""), ignore_errors=True)
