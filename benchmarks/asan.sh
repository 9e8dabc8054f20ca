#!/usr/bin/env bash
# The native CPU backend under AddressSanitizer: builds rnnjax/_cpu_recurrence with
# -fsanitize=address (setup.py, RNNJAX_SANITIZE=address) in a copy of the working tree, so the
# in-place build stays as it is, and runs the native tests there with libasan preloaded (the
# Python interpreter itself is not instrumented). Any heap overflow, use after free or the like
# in the kernels aborts with ASan's report; the tests' subprocesses (the crash cases) inherit it.
#
#   . .venv/bin/activate && benchmarks/asan.sh                       # the default tests
#   benchmarks/asan.sh tests/test_native.py -k chunks                 # or any pytest arguments
#
# Takes about 5 minutes on a 2-core CPU (test_native.py is 2-3x slower than without ASan).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$root/rnnjax" "$root/tests" "$root/setup.py" "$root/pyproject.toml" "$root/README.md" \
  "$root/MANIFEST.in" "$work/"
find "$work" \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
if ! (cd "$work" && RNNJAX_SANITIZE=address python setup.py -q build_ext --inplace \
  >"$work/build.log" 2>&1); then
  cat "$work/build.log"
  exit 1
fi
# libstdc++ preloaded too: ASan's C++-exception interceptor needs it loaded at start-up. JAX on
# CPU only: jaxlib's TPU plugin probe does not survive libasan.
preload="$(${CXX:-g++} -print-file-name=libasan.so) $(${CXX:-g++} -print-file-name=libstdc++.so)"
cd "$work"
export LD_PRELOAD="$preload" ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" JAX_PLATFORMS=cpu
python -c "import rnnjax, rnnjax._cpu_recurrence as ext; \
  assert rnnjax.__file__.startswith('$work') and ext.__file__.startswith('$work'), ext.__file__"
if [ $# -eq 0 ]; then set -- tests/test_native.py tests/test_native_safety.py; fi
python -m pytest -q -p no:cacheprovider "$@"
