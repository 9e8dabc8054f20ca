// rnnjax's own bfloat16 GEMM for CPUs with AVX512-BF16 (AMD Zen 4 and later, Intel Cooper Lake
// and later): c[m, n] = a[m, k] @ b[k, n], operands bf16, products and sums float32.
//
// MKL's bf16 GEMM runs no AVX512-BF16 code on AMD CPUs (on a Zen 4 EPYC it ran below its float32
// GEMM), and OpenBLAS's wheel has none. One VDPBF16PS multiplies 32 pairs of bf16 and adds them
// to 16 float32 sums: twice the multiply-adds of a float32 FMA of the same width. The kernel
// below reached 200 GFLOP/s a core on the recurrent products of a 64 x 256 / x 512 LSTM on that
// EPYC, where the float32 GEMMs peak at 85-93 (benchmarks/RESULTS.md, "sixth round").
//
// Plan (as BLIS's): b is packed once into panels of kCols columns, each panel a run of k/2
// rows of column pairs (b[2p][j], b[2p+1][j]), the layout VDPBF16PS reads; a is read in place,
// each pair of a row's consecutive elements broadcast as one 32-bit word. A block of kRows x
// kCols sums stays in 24 registers over the whole k. Rows are taken in blocks of kRowBlock, so
// that a block of a (kRowBlock x k) stays in L2 while every panel of b passes over it.
//
// Compiled for the AVX512-BF16 target only in the functions that need it (the rest of the
// extension stays baseline x86-64); Bf16KernelRuns() says whether this CPU may call them.

#ifndef RNNJAX_CSRC_BF16_KERNEL_H_
#define RNNJAX_CSRC_BF16_KERNEL_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

#include "bf16.h"  // ToBf16, RNNJAX_ROW

#if defined(__x86_64__) && (defined(__clang__) || __GNUC__ >= 10)
#define RNNJAX_BF16_KERNEL 1
#include <immintrin.h>
#define RNNJAX_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))
#else
#define RNNJAX_BF16_KERNEL 0
#endif

namespace rnnjax {

// Whether this build has the kernel and this CPU runs it.
inline bool Bf16KernelRuns() {
#if RNNJAX_BF16_KERNEL
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
#else
  return false;
#endif
}

namespace bf16_kernel {

constexpr int64_t kCols = 64;  // four registers of 16 sums
constexpr int64_t kRows = 6;   // 6 x 4 sums, 4 of b, 1 of a: 29 of the 32 registers
constexpr int64_t kRowBlock = 96;

// out[2j], out[2j + 1] = bf16(even[j]), bf16(odd[j]) (0 for a null odd row) for j < kCols, zeros
// past `columns`.
RNNJAX_ROW static void PackPair(int64_t columns, const float* __restrict even,
                                const float* __restrict odd, uint16_t* __restrict out) {
  if (columns == kCols && odd != nullptr) {  // the common case, as one vectorised loop
    for (int64_t j = 0; j < kCols; ++j) {
      out[2 * j] = ToBf16(even[j]);
      out[2 * j + 1] = ToBf16(odd[j]);
    }
    return;
  }
  for (int64_t j = 0; j < kCols; ++j) {
    out[2 * j] = j < columns ? ToBf16(even[j]) : 0;
    out[2 * j + 1] = j < columns && odd != nullptr ? ToBf16(odd[j]) : 0;
  }
}

#if RNNJAX_BF16_KERNEL
// sum[i][:] += the products of row i's pair of elements at `col` (a[col] alone where !kWhole:
// the last of an odd k, whose partner lies past the row) and the panel's pair of rows at b.
template <int kR, bool kWhole>
RNNJAX_BF16_TARGET __attribute__((always_inline)) inline void AddPair(
    __m512 (&sum)[kR][4], const uint16_t* a, int64_t lda, int64_t col, const uint16_t* b) {
  const __m512bh b0 = (__m512bh)_mm512_loadu_si512(b);
  const __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + 32);
  const __m512bh b2 = (__m512bh)_mm512_loadu_si512(b + 64);
  const __m512bh b3 = (__m512bh)_mm512_loadu_si512(b + 96);
  for (int i = 0; i < kR; ++i) {
    uint32_t pair = a[i * lda + col];
    if constexpr (kWhole) std::memcpy(&pair, a + i * lda + col, sizeof pair);
    const __m512bh ai = (__m512bh)_mm512_set1_epi32(static_cast<int32_t>(pair));
    sum[i][0] = _mm512_dpbf16_ps(sum[i][0], ai, b0);
    sum[i][1] = _mm512_dpbf16_ps(sum[i][1], ai, b1);
    sum[i][2] = _mm512_dpbf16_ps(sum[i][2], ai, b2);
    sum[i][3] = _mm512_dpbf16_ps(sum[i][3], ai, b3);
  }
}

// c[rows, :columns] (+)= a[rows, k] @ panel (added to c where accumulate), rows <= kRows,
// columns <= kCols; the panel holds k / 2 pairs of rows (and a last row with a zero partner
// where k is odd).
template <int kR>
RNNJAX_BF16_TARGET inline void Block(int64_t k, const uint16_t* a, int64_t lda,
                                     const uint16_t* panel, float* c, int64_t ldc,
                                     int64_t columns, bool accumulate) {
  __m512 sum[kR][4];
  for (int i = 0; i < kR; ++i)
    for (int q = 0; q < 4; ++q) sum[i][q] = _mm512_setzero_ps();
  const int64_t pairs = k / 2;
  for (int64_t p = 0; p < pairs; ++p) AddPair<kR, true>(sum, a, lda, 2 * p, panel + p * 2 * kCols);
  if (k % 2) AddPair<kR, false>(sum, a, lda, k - 1, panel + pairs * 2 * kCols);
  for (int i = 0; i < kR; ++i) {
    for (int q = 0; q < 4; ++q) {
      const int64_t left = std::clamp<int64_t>(columns - 16 * q, 0, 16);
      const __mmask16 mask = static_cast<__mmask16>((uint32_t{1} << left) - 1);
      float* to = c + i * ldc + 16 * q;
      if (accumulate) sum[i][q] = _mm512_add_ps(sum[i][q], _mm512_maskz_loadu_ps(mask, to));
      _mm512_mask_storeu_ps(to, mask, sum[i][q]);
    }
  }
}

RNNJAX_BF16_TARGET inline void Rows(int64_t rows, int64_t k, const uint16_t* a, int64_t lda,
                                    const uint16_t* panel, float* c, int64_t ldc,
                                    int64_t columns, bool add) {
  int64_t i = 0;
  for (; i + kRows <= rows; i += kRows)
    Block<kRows>(k, a + i * lda, lda, panel, c + i * ldc, ldc, columns, add);
  switch (rows - i) {
    case 5: return Block<5>(k, a + i * lda, lda, panel, c + i * ldc, ldc, columns, add);
    case 4: return Block<4>(k, a + i * lda, lda, panel, c + i * ldc, ldc, columns, add);
    case 3: return Block<3>(k, a + i * lda, lda, panel, c + i * ldc, ldc, columns, add);
    case 2: return Block<2>(k, a + i * lda, lda, panel, c + i * ldc, ldc, columns, add);
    case 1: return Block<1>(k, a + i * lda, lda, panel, c + i * ldc, ldc, columns, add);
    default: return;
  }
}
#endif

}  // namespace bf16_kernel

// b [k, n] (float32, leading dimension ldb; with transposed, b^T of b [n, k]) rounded to bf16
// (ToBf16) and packed for the kernel, in one pass over b (a streaming step packs W_hh per call),
// then c = a[m, k] @ b for any m. Only where Bf16KernelRuns().
class Bf16PackedMatrix {
 public:
  Bf16PackedMatrix() = default;
  Bf16PackedMatrix(int64_t k, int64_t n, const float* b, int64_t ldb, bool transposed = false)
      : k_(k), n_(n) {
    using bf16_kernel::kCols;
    const int64_t pairs = (k + 1) / 2, panels = (n + kCols - 1) / kCols;
    packed_.reset(new uint16_t[panels * pairs * 2 * kCols]);
    uint16_t* out = packed_.get();
    for (int64_t j0 = 0; j0 < n; j0 += kCols, out += pairs * 2 * kCols) {
      if (transposed) {  // b's rows are the panel's columns: once per call, not per product
        for (int64_t p = 0; p < pairs; ++p) {
          for (int64_t j = 0; j < kCols; ++j) {
            const float* row = b + (j0 + j) * ldb;
            const bool in = j0 + j < n;
            out[(p * kCols + j) * 2] = in ? ToBf16(row[2 * p]) : 0;
            out[(p * kCols + j) * 2 + 1] = in && 2 * p + 1 < k ? ToBf16(row[2 * p + 1]) : 0;
          }
        }
        continue;
      }
      for (int64_t p = 0; p < pairs; ++p) {
        const float* even = b + 2 * p * ldb + j0;
        const float* odd = 2 * p + 1 < k ? even + ldb : nullptr;  // zeros past k add nothing
        bf16_kernel::PackPair(std::min(kCols, n - j0), even, odd, out + p * 2 * kCols);
      }
    }
  }

  // c[m, n] = a[m, k] @ b, or c += that with accumulate; k == 0 adds zeros.
  void Multiply(int64_t m, const uint16_t* a, int64_t lda, float* c, int64_t ldc,
                bool accumulate = false) const {
#if RNNJAX_BF16_KERNEL
    using bf16_kernel::kCols;
    const int64_t panel_size = (k_ + 1) / 2 * 2 * kCols;
    for (int64_t i0 = 0; i0 < m; i0 += bf16_kernel::kRowBlock) {
      const int64_t rows = std::min(bf16_kernel::kRowBlock, m - i0);
      for (int64_t j0 = 0; j0 < n_; j0 += kCols) {
        bf16_kernel::Rows(rows, k_, a + i0 * lda, lda, packed_.get() + j0 / kCols * panel_size,
                          c + i0 * ldc + j0, ldc, std::min(kCols, n_ - j0), accumulate);
      }
    }
#else
    (void)m, (void)a, (void)lda, (void)c, (void)ldc, (void)accumulate;
#endif
  }

 private:
  int64_t k_ = 0, n_ = 0;
  std::unique_ptr<uint16_t[]> packed_;
};

}  // namespace rnnjax

#endif  // RNNJAX_CSRC_BF16_KERNEL_H_
