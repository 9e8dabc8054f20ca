#!/usr/bin/env bash
# Everything a lent GPU machine is needed for, in one short run: the backends' tests on the GPU
# (cuDNN and fused against the plain scan), then the GPU speed table.
#
#   bash benchmarks/gpu_check.sh OUTDIR
#
# The GPU machine has JAX, flax, optax and torch but no network: pure-Python wheels that rnnjax
# and the tests need beyond those are carried in .whl/ (pip download --no-deps -d .whl jaxtyping
# wadler_lindig pytest pluggy iniconfig).
set -uo pipefail
out=${1:-/tmp/rnnjax-gpu}
mkdir -p "$out"
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1  # JAX and torch share the GPU
python -c "import jaxtyping, pytest" 2>/dev/null ||
  pip install -q --no-index --find-links .whl jaxtyping wadler_lindig pytest pluggy iniconfig
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python -c "import jax, torch, flax; print('jax', jax.__version__, jax.devices(), 'torch', \
torch.__version__, 'cudnn', torch.backends.cudnn.version(), 'flax', flax.__version__)"
} 2>&1 | tee "$out/machine.txt"
timeout 150 python -m pytest -q -p no:cacheprovider tests/test_cudnn.py tests/test_fast_paths.py \
  2>&1 | tee "$out/tests.txt"
timeout "${SPEED_TIMEOUT:-280}" python -m benchmarks.speed --gpu --cells "${CELLS:-lstm,gru}" \
  --repeats 10 --json "$out/speed_gpu.json" 2>&1 | tee "$out/speed.txt"
