"""Loading the native CPU backend: the compiled extension, a BLAS for it, its FFI handlers.

The extension (``backends/csrc``, built at install) takes the addresses of its BLAS functions from
here: for float32, MKL's (the ``mkl`` wheel, ``rnnjax[mkl]``) where installed, with its
packed-matrix API, else OpenBLAS's (the ``scipy-openblas32`` wheel, a dependency, private to
rnnjax); ``RNNJAX_NATIVE_BLAS=mkl|openblas`` picks one. On AMD CPUs the kernels call OpenBLAS
for large problems, and MKL for small ones (``blas_table``) but where the CPU has AVX-512 (MKL
runs AVX2 code on AMD CPUs). On a 2-core AMD EPYC without AVX-512 (Zen 3, 2026-12-03,
``benchmarks/RESULTS.md``) OpenBLAS ran the LSTM and GRU layers at 64x256x128x512 4-19% faster
than MKL, and MKL those at 8x1024x64x128 10-25% faster and one streaming step 2x faster; on one
with AVX-512 (Zen 4, "CPU, fifth round") OpenBLAS ran those at 8x1024x64x128 1.3-2x faster
and the streaming steps as fast or faster. MKL's bfloat16 GEMM serves MixedPrecisionCell
layers whichever BLAS runs float32, on Intel CPUs with bf16 units; elsewhere the extension's own
(``bf16_kernel_runs``). Nothing is loaded
before a layer first asks whether the backend is available.
"""

import ctypes
import functools
import glob
import os
import sys
import warnings

import jax


def _library_dirs() -> list[str]:
    """Where pip puts the shared libraries of wheels such as ``mkl``: ``<prefix>/lib``."""
    return [os.path.join(prefix, "lib") for prefix in dict.fromkeys((sys.prefix, sys.base_prefix))]


# MKL's bfloat16 GEMM (bf16 operands, float32 products and sums) and its packed API, for
# MixedPrecisionCell layers; optional: an MKL without them (before 2020) runs float32 only.
_MKL_BF16 = (
    "cblas_gemm_bf16bf16f32",
    "cblas_gemm_bf16bf16f32_pack_get_size",
    "cblas_gemm_bf16bf16f32_pack",
    "cblas_gemm_bf16bf16f32_compute",
)


def _mkl_addresses():
    """MKL's sgemm, packed-matrix API, per-thread thread count and, or None each, bfloat16 GEMM
    (``_MKL_BF16``), or None where the ``mkl`` wheel is not installed; raises OSError or
    AttributeError where it is but does not load.

    Where rnnjax is MKL's first user in the process it also selects MKL's sequential layer (no
    OpenMP runtime loaded: the kernels thread themselves); where another library (e.g. NumPy in
    conda) already uses this MKL, its global settings stay, and the kernels' threads hold their
    own MKL calls to one thread each."""
    error = None
    for directory in _library_dirs():
        for path in sorted(glob.glob(os.path.join(directory, "libmkl_rt.so*"))):
            loaded_before = _already_loaded(os.path.basename(path))
            try:
                mkl = ctypes.CDLL(path)
            except OSError as problem:  # another file of the same name may load
                error = problem
                continue
            names = ("cblas_sgemm", "cblas_sgemm_pack_get_size", "cblas_sgemm_pack")
            names += ("cblas_sgemm_compute", "MKL_Set_Num_Threads_Local")
            addresses = [_address(mkl, name, path) for name in names]
            bf16 = [_address(mkl, name, path) for name in _MKL_BF16 if hasattr(mkl, name)]
            addresses += bf16 if len(bf16) == len(_MKL_BF16) else [None] * len(_MKL_BF16)
            set_layer = getattr(mkl, "MKL_Set_Threading_Layer", None)
            if set_layer is None:
                raise AttributeError(f"{path} has no symbol MKL_Set_Threading_Layer")
            if not loaded_before:
                set_layer(1)  # MKL_THREADING_SEQUENTIAL
            return addresses
    if error is not None:
        raise error
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
    sgemm = _address(blas, "scipy_cblas_sgemm", path)
    _address(blas, "scipy_openblas_set_num_threads", path)  # present, or a clear error
    blas.scipy_openblas_set_num_threads(1)
    return [sgemm] + [None] * (4 + len(_MKL_BF16))


def _address(library, name: str, path: str) -> int:
    try:
        function = getattr(library, name)
    except AttributeError:
        raise AttributeError(f"{path} has no symbol {name}") from None
    return ctypes.cast(function, ctypes.c_void_p).value


_BLAS = {"mkl": _mkl_addresses, "openblas": _openblas_addresses}


_tried = set()  # the BLAS libraries _load was asked for


@functools.cache
def _load(name: str) -> tuple[list[int | None] | None, str | None]:
    """``(addresses, None)``; ``(None, None)`` where ``name`` is not installed; ``(None, why)``
    where it is installed but does not load (a partial MKL without some symbol, say)."""
    _tried.add(name)
    try:
        return _BLAS[name](), None
    except (OSError, AttributeError) as error:
        return None, str(error)


def blas_addresses(name: str) -> list[int | None] | None:
    """The arguments of ``_cpu_recurrence.set_blas`` for ``name``, or None if it does not load."""
    return _load(name)[0]


def _table(name: str) -> list[int | None]:
    """``set_blas``'s arguments: ``name``'s float32 functions, and wherever MKL loads, its
    per-thread thread count and bfloat16 GEMM (MKL's own calls held to one thread each)."""
    addresses = list(_load(name)[0])
    mkl = _load("mkl")[0]
    if name != "mkl" and mkl is not None:
        addresses[4:] = mkl[4:]
    return addresses


def cpuinfo(field: str) -> str:
    """The first CPU's ``field`` in ``/proc/cpuinfo`` ("flags", "vendor_id"), or "" where there
    is none (another OS)."""
    try:
        with open("/proc/cpuinfo") as info:
            lines = (ln.split(":", 1) for ln in info if ln.startswith(field))
            return next((value.strip() for key, value in lines if key.strip() == field), "")
    except OSError:
        return ""


def cpu_has_bf16_units() -> bool:
    """Whether the CPU multiplies bfloat16 in hardware (AMX tiles or AVX512-BF16)."""
    flags = _cpu_flags()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def cpu_vendor() -> str:
    """The CPU vendor ("GenuineIntel", "AuthenticAMD"), or "" where /proc/cpuinfo has none."""
    return cpuinfo("vendor_id")


def bf16_kernel_runs() -> bool:
    """Whether the extension has rnnjax's own bfloat16 GEMM (``csrc/bf16_kernel.h``) and this CPU
    runs it (AVX512-BF16)."""
    if unavailable_reason() is not None:
        return False
    from rnnjax import _cpu_recurrence

    return _cpu_recurrence.bf16_kernel_runs()


def _cpu_flags() -> list[str]:
    return cpuinfo("flags").split()


def preferred_order() -> tuple[str, str]:
    """The BLAS tried first for float32, then the other: ``RNNJAX_NATIVE_BLAS`` where set, else
    MKL."""
    override = os.environ.get("RNNJAX_NATIVE_BLAS")
    if override is not None and override not in _BLAS:
        raise ValueError(f"RNNJAX_NATIVE_BLAS must be one of {sorted(_BLAS)}, got {override!r}")
    first = override or "mkl"
    return first, next(name for name in _BLAS if name != first)


def _automatic() -> tuple[str, str] | None:
    """``(BLAS for small problems, for large ones)``: the first of ``preferred_order`` that
    loads, as ``_by_problem_size`` splits it; None where none loads."""
    chosen = next((name for name in preferred_order() if _load(name)[0] is not None), None)
    return None if chosen is None else _by_problem_size(chosen)


def _by_problem_size(chosen: str) -> tuple[str, str]:
    """``(small, large)`` where ``chosen`` loaded first: on an AMD CPU where MKL was chosen by
    default, OpenBLAS for large problems, and for small ones too where the CPU has AVX-512 (MKL
    runs its AVX2 code on AMD CPUs, OpenBLAS its AVX-512 kernels); else ``chosen`` for both."""
    if os.environ.get("RNNJAX_NATIVE_BLAS") or chosen != "mkl" or cpu_vendor() != "AuthenticAMD":
        return chosen, chosen
    if _load("openblas")[0] is None:
        return chosen, chosen
    return ("openblas" if "avx512f" in _cpu_flags() else chosen), "openblas"


# The multiply-adds of a step's [B, P] @ [P, G*H] from which blas_table picks table 1: the layers
# at 64x256x128x256 and above (12-17M) ran faster on OpenBLAS on the AMD CPU, those at
# 8x1024x64x128 (0.5M) and streaming on MKL.
LARGE_STEP = 2**22

_state = {"small": None, "large": None, "bf16": False}


def blas_table(step_multiply_adds: int) -> int:
    """The ``blas`` attribute of a kernel call: 1 (the large problems' BLAS) from
    ``LARGE_STEP`` multiply-adds per step, else 0."""
    return int(step_multiply_adds >= LARGE_STEP)


def _apply(small: str, large: str) -> None:
    from rnnjax import _cpu_recurrence

    for index, name in enumerate((small, large)):
        _cpu_recurrence.set_blas(index, *_table(name))
    _state.update(small=small, large=large, bf16=_table(small)[-1] is not None)


@functools.cache
def unavailable_reason() -> str | None:
    """Why the native backend cannot run here, or None when it can. The first call loads the
    extension and a BLAS (``preferred_order``; MKL too, for bfloat16, where installed) and
    registers the FFI handlers; a BLAS that is installed but fails to load is skipped with one
    warning that names it and says why."""
    preferred_order()  # a bad RNNJAX_NATIVE_BLAS raises here, before anything loads
    try:
        from rnnjax import _cpu_recurrence
    except ImportError as error:
        return f"the compiled extension rnnjax._cpu_recurrence is not built ({error})"
    tables = _automatic()
    _load("mkl")  # its bfloat16 GEMM, whichever BLAS runs float32 (_table)
    failures = [
        f"{name} is installed but does not load ({_load(name)[1]})"
        for name in _BLAS
        if name in _tried and _load(name)[1] is not None
    ]
    if tables is None:
        reason = "no BLAS loads: " + "; ".join(
            failures or ["install scipy-openblas32 (a dependency) or mkl (rnnjax[mkl])"]
        )
        if failures:
            warnings.warn(f"rnnjax: {reason}; the layers run the scan", RuntimeWarning, 2)
        return reason
    _apply(*tables)
    if failures:
        warnings.warn(
            f"rnnjax: {'; '.join(failures)}; the native backend uses {_names()}",
            RuntimeWarning,
            2,
        )
    for name, capsule in _cpu_recurrence.handlers().items():  # forward, backward
        jax.ffi.register_ffi_target(f"rnnjax_{name}", capsule, platform="cpu")
    return None


def blas() -> str | None:
    """The BLAS the kernels call for float32: ``"mkl"`` where the ``mkl`` wheel is installed,
    else ``"openblas"``; ``"mkl+openblas"`` on AMD CPUs without AVX-512 with both (MKL for
    small problems, OpenBLAS for large: ``blas_table``), ``"openblas"`` on those with AVX-512;
    None when the backend is unavailable."""
    return None if unavailable_reason() is not None else _names()


def _names() -> str:
    small, large = _state["small"], _state["large"]
    return small if small == large else f"{small}+{large}"


def has_bf16() -> bool:
    """Whether the kernels' BLAS has a bfloat16 GEMM (MKL's): MixedPrecisionCell layers with
    ``compute_dtype=jnp.bfloat16`` run on the native backend where it has."""
    return unavailable_reason() is None and _state["bf16"]


def use_blas(name: str) -> None:
    """Switches the kernels' float32 GEMM to ``"mkl"`` or ``"openblas"`` for every problem, or
    back to the automatic choice with ``"auto"`` (for tests and benchmarks); bfloat16 stays on
    MKL where it loads."""
    if name not in (*_BLAS, "auto"):
        raise ValueError(f"blas must be one of {sorted(_BLAS) + ['auto']}, got {name!r}")
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"backend='native' cannot run: {reason}")
    if name == "auto":
        return _apply(*_automatic())
    addresses, problem = _load(name)
    if addresses is None:
        raise ValueError(f"{name} {'does not load: ' + problem if problem else 'is not installed'}")
    _apply(name, name)
