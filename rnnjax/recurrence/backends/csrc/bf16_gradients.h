// The backward chunk's weight and input gradients of a bfloat16 layer (MixedPrecisionCell): the
// transposes of the cell's two matmuls, dW_hh = H^T dZ, dW_ih = X^T dZ and dX = dZ W_ih^T, with
// both operands rounded to bf16 and their products summed in float32, as the forward rounds
// x W_ih and h W_hh. With rnnjax's kernel (kBf16Kernel, bf16_kernel.h) at its bf16 rate; else as
// float32 GEMMs of rounded copies (the same numbers up to the order of the sums).

#ifndef RNNJAX_CSRC_BF16_GRADIENTS_H_
#define RNNJAX_CSRC_BF16_GRADIENTS_H_

#include <cstdint>
#include <vector>

#include "bf16.h"
#include "bf16_kernel.h"
#include "blas.h"
#include "kernel_shape.h"

namespace rnnjax {

// One rank's products; its scratch lives as long as the rank's part of the call.
class RoundedProducts {
 public:
  // w [w_rows, w_cols] (ldw): the right operand of TimesWT, transposed there (W_ih for dX).
  RoundedProducts(bool kernel, int64_t w_rows, int64_t w_cols, const float* w, int64_t ldw)
      : kernel_(kernel), w_rows_(w_rows), w_cols_(w_cols), ldw_(PaddedStride(w_cols)) {
    if (kernel) {
      w_packed_ = Bf16PackedMatrix(w_cols, w_rows, w, ldw, /*transposed=*/true);
      return;
    }
    w_rounded_.resize(w_rows * ldw_);
    for (int64_t r = 0; r < w_rows; ++r) RoundBf16Row(w_cols, w + r * ldw, &w_rounded_[r * ldw_]);
  }

  // c[m, n] += bf(a)^T bf(b): a [k, m] (lda), b [k, n] (ldb).
  void AddTN(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
             int64_t ldb, float* c, int64_t ldc) {
    if (m == 0 || n == 0) return;
    if (kernel_) {
      a16_.resize(m * k);  // a^T [m, k], row pairs along k as the kernel reads them
      for (int64_t i = 0; i < k; ++i)
        for (int64_t j = 0; j < m; ++j) a16_[j * k + i] = ToBf16(a[i * lda + j]);
      Bf16PackedMatrix(k, n, b, ldb).Multiply(m, a16_.data(), k, c, ldc, /*accumulate=*/true);
      return;
    }
    a_rounded_.resize(k * m);
    b_rounded_.resize(k * n);
    for (int64_t i = 0; i < k; ++i) {
      RoundBf16Row(m, a + i * lda, &a_rounded_[i * m]);
      RoundBf16Row(n, b + i * ldb, &b_rounded_[i * n]);
    }
    Gemm(true, false, m, n, k, a_rounded_.data(), m, b_rounded_.data(), n, 1.f, c, ldc);
  }

  // c[m, w_rows] = bf(a) bf(w)^T: a [m, w_cols] (lda).
  void TimesWT(int64_t m, const float* a, int64_t lda, float* c, int64_t ldc) {
    if (m == 0) return;
    if (kernel_) {
      a16_.resize(m * w_cols_);
      for (int64_t r = 0; r < m; ++r) ToBf16Row(w_cols_, a + r * lda, &a16_[r * w_cols_]);
      w_packed_.Multiply(m, a16_.data(), w_cols_, c, ldc);
      return;
    }
    a_rounded_.resize(m * w_cols_);
    for (int64_t r = 0; r < m; ++r) RoundBf16Row(w_cols_, a + r * lda, &a_rounded_[r * w_cols_]);
    Gemm(false, true, m, w_rows_, w_cols_, a_rounded_.data(), w_cols_, w_rounded_.data(), ldw_,
         0.f, c, ldc);
  }

 private:
  bool kernel_;
  int64_t w_rows_, w_cols_, ldw_;
  Bf16PackedMatrix w_packed_;
  std::vector<float> w_rounded_, a_rounded_, b_rounded_;
  std::vector<uint16_t> a16_;
};

}  // namespace rnnjax

#endif  // RNNJAX_CSRC_BF16_GRADIENTS_H_
