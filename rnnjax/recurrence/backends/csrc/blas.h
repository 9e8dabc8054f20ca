// The BLAS behind the native CPU backend: a table of function addresses that Python fills from
// MKL (with its packed-matrix API) or OpenBLAS (scipy-openblas32), and one helper type.
//
// Every call here is single-threaded: the kernels split their work over their own threads
// (team.h), so that the gate math runs in parallel too, not only the matmuls.

#ifndef RNNJAX_CSRC_BLAS_H_
#define RNNJAX_CSRC_BLAS_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "bf16_kernel.h"

namespace rnnjax {

using Sgemm = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int,
                       float, float*, int);
using PackGetSize = size_t (*)(int, int, int, int);
using Pack = void (*)(int, int, int, int, int, int, float, const float*, int, float*);
using Compute = void (*)(int, int, int, int, int, int, const float*, int, const float*, int,
                         float, float*, int);
using SetThreadsLocal = int (*)(int);
// MKL's bfloat16 GEMM (operands bf16, products and sums float32) and its packed API.
using Bf16Gemm = void (*)(int, int, int, int, int, int, float, const uint16_t*, int,
                          const uint16_t*, int, float, float*, int);
using Bf16Pack = void (*)(int, int, int, int, int, int, const uint16_t*, int, uint16_t*);

struct Blas {
  Sgemm sgemm = nullptr;
  // MKL's cblas_sgemm_pack_get_size / _pack / _compute, or null (OpenBLAS has no packed API).
  PackGetSize pack_get_size = nullptr;
  Pack pack = nullptr;
  Compute compute = nullptr;
  // MKL_Set_Num_Threads_Local, or null: every BLAS call here runs on one thread.
  SetThreadsLocal set_threads_local = nullptr;
  // MKL's cblas_gemm_bf16bf16f32 and its _pack_get_size / _pack / _compute, or null (OpenBLAS,
  // an MKL before 2020): the kernels then refuse bf16 (MixedPrecisionCell runs the scan).
  Bf16Gemm bf16_gemm = nullptr;
  PackGetSize bf16_pack_get_size = nullptr;
  Bf16Pack bf16_pack = nullptr;
  Bf16Gemm bf16_compute = nullptr;
  bool has_bf16() const {
    return bf16_gemm && bf16_pack_get_size && bf16_pack && bf16_compute;
  }
};

// The tables Python sets (_native_loading): [0] for small problems, [1] for large ones; the
// same BLAS in both but on AMD CPUs, where OpenBLAS ran the large problems faster and MKL the
// small ones. A call copies its table into g_blas under g_call_mutex (kernel_shape.h) before
// its threads start.
inline Blas g_blas_tables[2];
inline Blas g_blas;

// Holds the calling thread's BLAS to one thread while it lives (MKL's setting is per thread;
// OpenBLAS is set to one thread when loaded, as rnnjax has its own copy).
class OneBlasThread {
 public:
  OneBlasThread()
      : previous_(g_blas.set_threads_local ? g_blas.set_threads_local(1) : 0) {}
  ~OneBlasThread() {
    if (g_blas.set_threads_local) g_blas.set_threads_local(previous_);
  }

 private:
  int previous_;
};

// MKL's packed buffers: its size query asks for up to 90x the matrix (5.7 MiB for a 64 x 256
// weight), of which the packing writes a part. new T[] leaves the rest untouched, so its pages
// are never faulted in; a zero-filled std::vector touched them all, 5-6 ms a call on a VM where
// first-touch faults cost ~3 us a page (2026-12-03, 19% of an LSTM inference call at 8x1024x64x128).
template <typename T>
class PackedBuffer {
 public:
  void Allocate(size_t bytes) {
    size_ = bytes / sizeof(T) + 1;
    data_.reset(new T[size_]);  // default-initialised: not written here
  }
  bool empty() const { return size_ == 0; }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }

 private:
  size_t size_ = 0;
  std::unique_ptr<T[]> data_;
};

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151, kBMatrix = 162;

// c[m, n] = beta * c + op(a) @ op(b), row-major with leading dimensions.
inline void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
                 int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum; BLAS would refuse the leading dimension 0 (lda >= max(1, k))
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];
    return;
  }
  g_blas.sgemm(kRowMajor, trans_a ? kTrans : kNoTrans, trans_b ? kTrans : kNoTrans, m, n, k, 1.f,
               a, lda, b, ldb, beta, c, ldc);
}

// The right operand op(w) [k, n] of many products a[m, k] @ op(w) with the same m: the
// recurrent weight, multiplied once per step. With MKL it is packed once into the kernel's
// internal layout, which the per-step products then skip (1.3-1.5x faster at m = 64); not for a
// few products (pack = false), where packing would cost more than it saves.
class RightOperand {
 public:
  RightOperand(int64_t m, int64_t n, int64_t k, const float* w, int64_t ldw, bool trans,
               bool pack = true)
      : m_(m), n_(n), k_(k), w_(w), ldw_(ldw), trans_(trans) {
    if (!pack || g_blas.pack == nullptr || m == 0 || n == 0 || k == 0) return;
    packed_.Allocate(g_blas.pack_get_size(kBMatrix, m, n, k));
    g_blas.pack(kRowMajor, kBMatrix, trans ? kTrans : kNoTrans, m, n, k, 1.f, w, ldw,
                packed_.data());
  }

  // c[m, n] = beta * c + a[m, k] @ op(w).
  void Multiply(const float* a, int64_t lda, float beta, float* c, int64_t ldc) const {
    if (m_ == 0 || n_ == 0) return;
    if (packed_.empty()) {  // also k == 0, which Gemm handles
      Gemm(false, trans_, m_, n_, k_, a, lda, w_, ldw_, beta, c, ldc);
    } else {
      g_blas.compute(kRowMajor, kNoTrans, kPacked, m_, n_, k_, a, lda, packed_.data(), n_, beta,
                     c, ldc);
    }
  }

 private:
  int64_t m_, n_, k_;
  const float* w_;
  int64_t ldw_;
  bool trans_;
  PackedBuffer<float> packed_;
};

// c[m, n] = a[m, k] @ b[k, n] in float32 of bfloat16 operands (g_blas.has_bf16()).
inline void GemmBf16(int64_t m, int64_t n, int64_t k, const uint16_t* a, int64_t lda,
                     const uint16_t* b, int64_t ldb, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) std::fill_n(c + i * ldc, n, 0.f);
    return;
  }
  g_blas.bf16_gemm(kRowMajor, kNoTrans, kNoTrans, m, n, k, 1.f, a, lda, b, ldb, 0.f, c, ldc);
}

// RightOperand's bfloat16 twin: w [k, n], then c = a[m, k] @ w per product: MKL's bf16 GEMM
// of w in bf16, packed once unless pack = false (a few products, where packing costs more than
// it saves); or rnnjax's own (Builtin: bf16_kernel.h), which rounds and packs w from float32.
class RightOperandBf16 {
 public:
  RightOperandBf16(int64_t m, int64_t n, int64_t k, const uint16_t* w, int64_t ldw, bool pack)
      : m_(m), n_(n), k_(k), w_(w), ldw_(ldw) {
    if (!pack || m == 0 || n == 0 || k == 0) return;
    packed_.Allocate(g_blas.bf16_pack_get_size(kBMatrix, m, n, k));
    g_blas.bf16_pack(kRowMajor, kBMatrix, kNoTrans, m, n, k, w, ldw, packed_.data());
  }

  static RightOperandBf16 Builtin(int64_t m, int64_t n, int64_t k, const float* w, int64_t ldw) {
    RightOperandBf16 operand(m, 0, k, nullptr, 0, false);
    operand.n_ = n;
    operand.builtin_ = true;
    if (n > 0) operand.kernel_ = Bf16PackedMatrix(k, n, w, ldw);
    return operand;
  }

  // c[m, n] = a[m, k] @ w, with the m given at construction.
  void Multiply(const uint16_t* a, int64_t lda, float* c, int64_t ldc) const {
    Multiply(m_, a, lda, c, ldc);
  }

  // The same for any m where w is not packed for MKL (pack = false, or Builtin).
  void Multiply(int64_t m, const uint16_t* a, int64_t lda, float* c, int64_t ldc) const {
    if (m == 0 || n_ == 0) return;
    if (builtin_) return kernel_.Multiply(m, a, lda, c, ldc);
    if (packed_.empty()) return GemmBf16(m, n_, k_, a, lda, w_, ldw_, c, ldc);
    g_blas.bf16_compute(kRowMajor, kNoTrans, kPacked, m, n_, k_, 1.f, a, lda, packed_.data(),
                        n_, 0.f, c, ldc);
  }

 private:
  int64_t m_, n_, k_;
  const uint16_t* w_;
  int64_t ldw_;
  bool builtin_ = false;
  PackedBuffer<uint16_t> packed_;
  Bf16PackedMatrix kernel_;
};

}  // namespace rnnjax

#endif  // RNNJAX_CSRC_BLAS_H_
