"""Loading the native CPU backend: the compiled extension, a BLAS for it, its FFI handlers.

The extension (``backends/csrc``, built at install) takes the addresses of its BLAS functions from
here: MKL's (the ``mkl`` wheel, ``rnnjax[mkl]``) where installed, with its packed-matrix API,
else OpenBLAS's (the ``scipy-openblas32`` wheel, a dependency, private to rnnjax). Nothing is
loaded before a layer first asks whether the backend is available.
"""

import ctypes
import functools
import glob
import os
import sys

import jax


def _library_dirs() -> list[str]:
    """Where pip puts the shared libraries of wheels such as ``mkl``: ``<prefix>/lib``."""
    return [os.path.join(prefix, "lib") for prefix in dict.fromkeys((sys.prefix, sys.base_prefix))]


def _mkl_addresses():
    """MKL's sgemm, packed-matrix API and per-thread thread count, or None.

    Where rnnjax is MKL's first user in the process it also selects MKL's sequential layer (no
    OpenMP runtime loaded: the kernels thread themselves); where another library (e.g. NumPy in
    conda) already uses this MKL, its global settings stay, and the kernels' threads hold their
    own MKL calls to one thread each."""
    for directory in _library_dirs():
        for path in sorted(glob.glob(os.path.join(directory, "libmkl_rt.so*"))):
            loaded_before = _already_loaded(os.path.basename(path))
            try:
                mkl = ctypes.CDLL(path)
            except OSError:
                continue
            if not loaded_before:
                mkl.MKL_Set_Threading_Layer(1)  # MKL_THREADING_SEQUENTIAL
            names = ("cblas_sgemm", "cblas_sgemm_pack_get_size", "cblas_sgemm_pack")
            names += ("cblas_sgemm_compute", "MKL_Set_Num_Threads_Local")
            return [_address(mkl, name) for name in names]
    return None


def _already_loaded(library: str) -> bool:
    try:
        with open("/proc/self/maps") as maps:
            return any(library in line for line in maps)
    except OSError:
        return False


def _openblas_addresses():
    """OpenBLAS's sgemm (the scipy-openblas32 wheel, private to rnnjax), single-threaded."""
    try:
        import scipy_openblas32
    except ImportError:
        return None
    path = os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(True))
    blas = ctypes.CDLL(path)
    blas.scipy_openblas_set_num_threads(1)
    return [_address(blas, "scipy_cblas_sgemm"), None, None, None, None]


def _address(library, name: str) -> int:
    return ctypes.cast(getattr(library, name), ctypes.c_void_p).value


_BLAS = {"mkl": _mkl_addresses, "openblas": _openblas_addresses}


@functools.cache
def blas_addresses(name: str) -> list[int | None] | None:
    """The arguments of ``_cpu_recurrence.set_blas`` for ``name``, or None if not installed."""
    return _BLAS[name]()


_state = {"blas": None}


@functools.cache
def unavailable_reason() -> str | None:
    """Why the native backend cannot run here, or None when it can. The first call loads the
    extension and a BLAS and registers the FFI handlers."""
    try:
        from rnnjax import _cpu_recurrence
    except ImportError as error:
        return f"the compiled extension rnnjax._cpu_recurrence is not built ({error})"
    for name in ("mkl", "openblas"):
        if blas_addresses(name) is not None:
            _cpu_recurrence.set_blas(*blas_addresses(name))
            _state["blas"] = name
            break
    else:
        return "no BLAS found: install scipy-openblas32 (a dependency) or mkl (rnnjax[mkl])"
    for name, capsule in _cpu_recurrence.handlers().items():  # forward, backward
        jax.ffi.register_ffi_target(f"rnnjax_{name}", capsule, platform="cpu")
    return None


def blas() -> str | None:
    """The BLAS the kernels call: ``"mkl"`` where the ``mkl`` wheel is installed, else
    ``"openblas"``; None when the backend is unavailable."""
    unavailable_reason()
    return _state["blas"]


def use_blas(name: str) -> None:
    """Switches the kernels to ``"mkl"`` or ``"openblas"`` (for tests and benchmarks)."""
    if name not in _BLAS:
        raise ValueError(f"blas must be one of {sorted(_BLAS)}, got {name!r}")
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"backend='native' cannot run: {reason}")
    addresses = blas_addresses(name)
    if addresses is None:
        raise ValueError(f"{name} is not installed here")
    from rnnjax import _cpu_recurrence

    _cpu_recurrence.set_blas(*addresses)
    _state["blas"] = name
