// float32 -> bfloat16 rounding for the kernels' bf16 matmul operands (MixedPrecisionCell): round
// to nearest even, as JAX's astype(jnp.bfloat16); NaN stays a (quiet) NaN, infinities stay.

#ifndef RNNJAX_CSRC_BF16_H_
#define RNNJAX_CSRC_BF16_H_

#include <cstdint>
#include <cstring>

#include "gate_math.h"  // RNNJAX_ROW

namespace rnnjax {

// How the kernels multiply a MixedPrecisionCell's bf16 operands (the `bf16` attribute of both
// calls; forward.h and backward.h say which products): not at all (float32), as float32 GEMMs of
// the rounded values, with MKL's bf16 GEMM, or with rnnjax's own (bf16_kernel.h).
enum Bf16Mode : int32_t { kFloat32 = 0, kBf16Rounded = 1, kBf16Gemm = 2, kBf16Kernel = 3 };

inline uint16_t ToBf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const bool nan = (bits & 0x7fffffffu) > 0x7f800000u;
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  return static_cast<uint16_t>(nan ? (bits >> 16) | 0x40u : rounded);
}

// y[j] = bf16(x[j]) for j < n.
RNNJAX_ROW static void ToBf16Row(int64_t n, const float* __restrict x, uint16_t* __restrict y) {
  for (int64_t j = 0; j < n; ++j) y[j] = ToBf16(x[j]);
}

// y[j] = bf16(x[j]) as a float (exactly representable): for float32 GEMMs of bf16 operands,
// whose products are exact in float32 (8-bit significands make 16-bit products), so they
// compute what a bf16 GEMM with float32 accumulation does, up to the order of the sums.
RNNJAX_ROW static void RoundBf16Row(int64_t n, const float* __restrict x, float* __restrict y) {
  for (int64_t j = 0; j < n; ++j) {
    const uint32_t bits = static_cast<uint32_t>(ToBf16(x[j])) << 16;
    std::memcpy(&y[j], &bits, sizeof bits);
  }
}

}  // namespace rnnjax

#endif  // RNNJAX_CSRC_BF16_H_
