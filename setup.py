"""Builds the native CPU backend's kernels (``rnnjax/recurrence/backends/csrc``).

The rest is in pyproject.toml.

The extension is optional: where it cannot be compiled (no C++ compiler, no jaxlib headers) the
package still installs, and ``rnnjax.recurrence.backends._native.unavailable_reason()`` says
why the layers fall back to the scan.
"""

import glob
import os

from setuptools import Extension, setup


def _xla_ffi_include() -> list[str]:
    """jaxlib ships the XLA FFI headers (``xla/ffi/api/ffi.h``) under ``jaxlib/include``."""
    try:
        import jaxlib
    except ImportError:
        return []
    return [os.path.join(os.path.dirname(jaxlib.__file__), "include")]


def _sanitizer() -> list[str]:
    """``RNNJAX_SANITIZE=address`` (or ``thread``) builds with that sanitizer, for
    ``benchmarks/asan.sh``; the build is then required, not optional."""
    name = os.environ.get("RNNJAX_SANITIZE")
    if not name:
        return []
    if name not in ("address", "thread"):
        raise SystemExit(f"RNNJAX_SANITIZE must be 'address' or 'thread', got {name!r}")
    return [f"-fsanitize={name}", "-fno-omit-frame-pointer", "-g"]


cpu_recurrence = Extension(
    "rnnjax._cpu_recurrence",
    sources=["rnnjax/recurrence/backends/csrc/cpu_recurrence.cc"],
    depends=sorted(glob.glob("rnnjax/recurrence/backends/csrc/*.h")),  # rebuilt when one changes
    include_dirs=_xla_ffi_include(),
    language="c++",
    # No -ffast-math: the kernels keep IEEE semantics. These two only let GCC vectorise the
    # selects and clamps of the gate math (no errno, no floating-point traps to preserve).
    extra_compile_args=["-std=c++17", "-O3", "-fno-math-errno", "-fno-trapping-math"]
    + _sanitizer(),
    extra_link_args=_sanitizer(),
    optional=not _sanitizer(),
)

setup(ext_modules=[cpu_recurrence])
