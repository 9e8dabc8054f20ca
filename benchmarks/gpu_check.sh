#!/usr/bin/env bash
# Everything a lent GPU machine is needed for, in one short run: the core, interop and backend
# tests on the GPU (where layers default to the fused backend with hoisted inputs, and the cuDNN
# kernel is compared with the plain scan), then the GPU speed table, then the bfloat16 policy's
# training step against float32 at issue 17's 64x512x256x1024 on the fused backend. About 6
# minutes on an H200.
#
#   bash benchmarks/gpu_check.sh OUTDIR
#
# The GPU machine has JAX, flax, optax and torch but no network: pure-Python wheels that rnnjax
# and the tests need beyond those are carried in .whl/ (pip download --no-deps -d .whl jaxtyping
# wadler_lindig pytest pluggy iniconfig pytest-xdist execnet) and installed where missing.
# TESTS, CELLS, SHAPES, SPEED_TIMEOUT, BF16_SHAPE and BF16_TIMEOUT override the defaults (for a
# quick local smoke run).
set -uo pipefail
out=${1:-/tmp/rnnjax-gpu}
mkdir -p "$out"
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1  # JAX and torch share the GPU
for need in "jaxtyping:jaxtyping wadler_lindig" "pytest:pytest pluggy iniconfig" \
  "xdist:pytest-xdist execnet"; do
  python -c "import ${need%%:*}" 2>/dev/null ||
    pip install -q --no-index --no-deps --find-links .whl ${need#*:}
done
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python -c "import jax, torch, flax; print('jax', jax.__version__, jax.devices(), 'torch', \
torch.__version__, 'cudnn', torch.backends.cudnn.version(), 'flax', flax.__version__)"
} 2>&1 | tee "$out/machine.txt"
default_tests="tests/test_layers.py tests/test_cells.py tests/test_custom_cell.py
  tests/test_validation.py tests/test_interop_torch.py tests/test_models.py
  tests/test_fast_paths.py tests/test_cudnn.py"
# shellcheck disable=SC2086  # the test list is split on purpose
timeout 200 python -m pytest -q -n 8 -p no:cacheprovider ${TESTS:-$default_tests} 2>&1 |
  tee "$out/tests.txt"
shapes=()
if [ -n "${SHAPES:-}" ]; then shapes=(--shapes "$SHAPES" --stream-shape "1x1x${SHAPES#*x*x}"); fi
timeout "${SPEED_TIMEOUT:-280}" python -m benchmarks.speed --gpu --cells "${CELLS:-lstm,gru}" \
  "${shapes[@]}" --repeats 10 --json "$out/speed_gpu.json" 2>&1 | tee "$out/speed.txt"
timeout "${BF16_TIMEOUT:-150}" python -m benchmarks.mixed_precision \
  --shape "${BF16_SHAPE:-64,512,256,1024}" --cells "${CELLS:-lstm,gru}" --repeats 10 \
  --json "$out/mixed_precision_gpu.json" 2>&1 | tee "$out/mixed_precision.txt"
