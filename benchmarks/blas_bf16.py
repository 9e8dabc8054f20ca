"""What bfloat16 matmuls could give the native CPU kernels: MKL's sgemm against its bf16 GEMM.

    python -m benchmarks.blas_bf16                 # one core, the kernels' per-step shapes

XLA:CPU runs bfloat16 dots slower than float32 on this machine (``benchmarks/mixed_precision``),
but the CPU has AMX tiles for bf16, which MKL's ``cblas_gemm_bf16bf16f32`` (bf16 operands,
float32 accumulation and result) uses. This times both on the shapes the native kernels call
once per step (``[B, H] @ [H, G*H/threads]``) and per chunk of steps (the input projection),
single-threaded as the kernels call them. Needs the ``mkl`` wheel (``rnnjax[mkl]``).
"""

import argparse
import ctypes
import glob
import os
import time

import numpy as np

from rnnjax.recurrence.backends import _native_loading

SHAPES = "64x256x512,64x256x1024,64x512x1024,512x128x512,512x128x1024"
_ROW_MAJOR, _NO_TRANS = 101, 111


def _mkl():
    for directory in _native_loading._library_dirs():
        for path in sorted(glob.glob(os.path.join(directory, "libmkl_rt.so*"))):
            mkl = ctypes.CDLL(path)
            mkl.MKL_Set_Threading_Layer(1)  # sequential: one core, as the kernels' threads
            return mkl
    raise SystemExit("benchmarks.blas_bf16 needs MKL: pip install 'rnnjax[mkl]'")


def _time(function, args, seconds: float) -> float:
    """Median of 5 rounds of back-to-back calls, seconds per call."""
    for _ in range(10):
        function(*args)
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < seconds / 5:
        function(*args)
        calls += 1
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            function(*args)
        rounds.append((time.perf_counter() - start) / calls)
    return float(np.median(rounds))


def _bf16(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, rounded to nearest even."""
    bits = a.astype(np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default=SHAPES, help="comma-separated MxKxN of C = A @ B")
    parser.add_argument("--seconds", type=float, default=1.0, help="per shape and type")
    args = parser.parse_args(argv)
    mkl = _mkl()
    types = [ctypes.c_int] * 6 + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int]
    types += [ctypes.c_void_p, ctypes.c_int, ctypes.c_float, ctypes.c_void_p, ctypes.c_int]
    sgemm, bf16_gemm = mkl.cblas_sgemm, mkl.cblas_gemm_bf16bf16f32
    sgemm.argtypes = bf16_gemm.argtypes = types
    rng = np.random.default_rng(0)
    print("| M x K x N | float32 us | GFLOP/s | bf16 (f32 accumulation) us | GFLOP/s | speed-up |")
    print("|---|---|---|---|---|---|")
    for text in args.shapes.split(","):
        m, k, n = (int(v) for v in text.split("x"))
        a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
        c = np.zeros((m, n), np.float32)
        a16, b16 = _bf16(a), _bf16(b)
        head = (_ROW_MAJOR, _NO_TRANS, _NO_TRANS, m, n, k, 1.0)
        tail = (0.0, c.ctypes.data, n)
        f32 = _time(sgemm, head + (a.ctypes.data, k, b.ctypes.data, n) + tail, args.seconds)
        bf16 = _time(
            bf16_gemm, head + (a16.ctypes.data, k, b16.ctypes.data, n) + tail, args.seconds
        )
        flop = 2 * m * n * k
        print(
            f"| {text} | {f32 * 1e6:.1f} | {flop / f32 / 1e9:.0f} | {bf16 * 1e6:.1f} | "
            f"{flop / bf16 / 1e9:.0f} | {f32 / bf16:.2f} |"
        )


if __name__ == "__main__":
    main()
