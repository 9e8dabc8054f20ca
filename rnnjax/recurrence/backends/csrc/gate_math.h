// Gate math of the native CPU backend, one example and one range of hidden units at a time.
//
// Each function handles units [j0, j0 + n) of one row; the caller offsets every pointer by j0.
// Arrays holding several gates (pre-activations, activations, cotangents) lay the gates out in
// PyTorch's order, one block per gate, the blocks `stride` floats apart. The loops vectorise
// (checked with -fopt-info-vec): no libm calls, selects instead of branches, restrict pointers.

#ifndef RNNJAX_CSRC_GATE_MATH_H_
#define RNNJAX_CSRC_GATE_MATH_H_

#include <cstdint>

namespace rnnjax {

// Cephes' single-precision exp (relative error ~1e-7), written so that GCC vectorises loops that
// call it (no libm calls, selects instead of branches); libm's expf does not vectorise without
// -ffast-math. Defined for every input: +-inf saturate (to e^88 and e^-87, finite, so that
// 1 / (1 + Exp(x)) reaches 0 and 1 as jax.nn.sigmoid does), and NaN returns NaN without ever
// reaching the float-to-int conversion (undefined for NaN) or shifting a negative number.
[[gnu::always_inline]] inline float Exp(float x) {
  const bool nan = x != x;
  float y = nan ? 0.f : x;
  y = y < -87.f ? -87.f : y;
  y = y > 88.f ? 88.f : y;
  // Round y / ln 2 to the nearest integer with the 1.5 * 2^23 trick (vectorises; rint does not).
  float n = y * 1.44269504088896341f + 12582912.f - 12582912.f;
  float r = y - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  // n is in [-126, 127] here, so the biased exponent n + 127 is in [1, 254]: a normal float.
  union {
    uint32_t i;
    float f;
  } scale;
  scale.i = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  return nan ? x : p * scale.f;
}

[[gnu::always_inline]] inline float Sigmoid(float x) { return 1.f / (1.f + Exp(-x)); }

[[gnu::always_inline]] inline float Tanh(float x) {
  // 1 - 2 / (exp(2x) + 1) loses relative accuracy near 0, where the odd series takes over.
  float big = 1.f - 2.f / (Exp(2.f * x) + 1.f);
  float x2 = x * x;
  float small = x * (1.f + x2 * (-1.f / 3 + x2 * (2.f / 15 + x2 * (-17.f / 315))));
  return (x < 0.f ? -x : x) < 0.0625f ? small : big;
}

// Each row function is compiled for AVX-512, AVX2 and baseline x86-64, picked at load time.
#if defined(__x86_64__) && defined(__GNUC__)
#define RNNJAX_ROW __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RNNJAX_ROW
#endif
#define R __restrict

// One LSTM unit from its four pre-activations and its cell state: gates, new c and h.
struct LstmUnit {
  float i, f, g, o, c, h;
  [[gnu::always_inline]] LstmUnit(float zi, float zf, float zg, float zo, float c_prev)
      : i(Sigmoid(zi)), f(Sigmoid(zf)), g(Tanh(zg)), o(Sigmoid(zo)), c(f * c_prev + i * g),
        h(o * Tanh(c)) {}
};

// LSTM step. p: projected input, hw: h @ W_hh, acts out: i, f, g, o, or none where acts is
// nullptr (inference: their stores would pass a quarter to a half of a step's cache traffic
// through L2). Two loops, each over this function's __restrict pointers: a loop body inlined
// from another function loses __restrict (GCC then guards the vector loop with a run-time
// overlap check of the pointers), and a test of acts inside one loop does not vectorise.
RNNJAX_ROW static void LstmRow(int64_t n, const float* R p, int64_t sp, const float* R bias,
                               int64_t sb, const float* R hw, int64_t shw, const float* R c,
                               float* R h_new, float* R c_new, float* R out, float* R acts,
                               int64_t sa) {
  if (acts == nullptr) {
    for (int64_t j = 0; j < n; ++j) {
      const LstmUnit u(p[j] + bias[j] + hw[j], p[sp + j] + bias[sb + j] + hw[shw + j],
                       p[2 * sp + j] + bias[2 * sb + j] + hw[2 * shw + j],
                       p[3 * sp + j] + bias[3 * sb + j] + hw[3 * shw + j], c[j]);
      c_new[j] = u.c;
      h_new[j] = u.h;
      out[j] = u.h;
    }
    return;
  }
  for (int64_t j = 0; j < n; ++j) {
    const LstmUnit u(p[j] + bias[j] + hw[j], p[sp + j] + bias[sb + j] + hw[shw + j],
                     p[2 * sp + j] + bias[2 * sb + j] + hw[2 * shw + j],
                     p[3 * sp + j] + bias[3 * sb + j] + hw[3 * shw + j], c[j]);
    c_new[j] = u.c;
    h_new[j] = u.h;
    out[j] = u.h;
    acts[j] = u.i;
    acts[sa + j] = u.f;
    acts[2 * sa + j] = u.g;
    acts[3 * sa + j] = u.o;
  }
}

// Its VJP: dz is the cotangent of the pre-activations (of the projection and of h W_hh alike).
RNNJAX_ROW static void LstmRowGrad(int64_t n, const float* R acts, int64_t sa,
                                   const float* R c_prev, const float* R dh_in,
                                   const float* R d_out, const float* R dc_in, float* R dc_prev,
                                   float* R dz, int64_t sz) {
  for (int64_t j = 0; j < n; ++j) {
    float i = acts[j], f = acts[sa + j], g = acts[2 * sa + j], o = acts[3 * sa + j];
    float tc = Tanh(f * c_prev[j] + i * g);
    float dh = dh_in[j] + d_out[j];
    float dc = dc_in[j] + dh * o * (1.f - tc * tc);
    dz[j] = dc * g * i * (1.f - i);
    dz[sz + j] = dc * c_prev[j] * f * (1.f - f);
    dz[2 * sz + j] = dc * i * (1.f - g * g);
    dz[3 * sz + j] = dh * tc * o * (1.f - o);
    dc_prev[j] = dc * f;
  }
}

// One reset-after GRU unit from its pre-activations (hn: h W_hn + b_hn) and its state.
struct GruUnit {
  float r, z, n, h;
  [[gnu::always_inline]] GruUnit(float zr, float zz, float zn, float hn, float h_prev)
      : r(Sigmoid(zr)), z(Sigmoid(zz)), n(Tanh(zn + r * hn)), h((1.f - z) * n + z * h_prev) {}
};

// GRU step, reset after the matmul; acts out: r, z, n, h W_hn + b_hn, or none (two loops, as
// LstmRow).
RNNJAX_ROW static void GruRow(int64_t n, const float* R p, int64_t sp, const float* R bias,
                              int64_t sb, const float* R hw, int64_t shw, const float* R b_hn,
                              const float* R h, float* R h_new, float* R out, float* R acts,
                              int64_t sa) {
  if (acts == nullptr) {
    for (int64_t j = 0; j < n; ++j) {
      const GruUnit u(p[j] + bias[j] + hw[j], p[sp + j] + bias[sb + j] + hw[shw + j],
                      p[2 * sp + j] + bias[2 * sb + j], hw[2 * shw + j] + b_hn[j], h[j]);
      h_new[j] = u.h;
      out[j] = u.h;
    }
    return;
  }
  for (int64_t j = 0; j < n; ++j) {
    const float hn = hw[2 * shw + j] + b_hn[j];
    const GruUnit u(p[j] + bias[j] + hw[j], p[sp + j] + bias[sb + j] + hw[shw + j],
                    p[2 * sp + j] + bias[2 * sb + j], hn, h[j]);
    h_new[j] = u.h;
    out[j] = u.h;
    acts[j] = u.r;
    acts[sa + j] = u.z;
    acts[2 * sa + j] = u.n;
    acts[3 * sa + j] = hn;
  }
}

// Its VJP: d_hw of h W_hh (+ b_hn), d_p of the projection, dh_direct the z * dh part of dh_prev.
RNNJAX_ROW static void GruRowGrad(int64_t n, const float* R acts, int64_t sa,
                                  const float* R h_prev, const float* R dh_in,
                                  const float* R d_out, float* R d_hw, float* R d_p, int64_t sz,
                                  float* R dh_direct) {
  for (int64_t j = 0; j < n; ++j) {
    float r = acts[j], z = acts[sa + j], nv = acts[2 * sa + j], hn = acts[3 * sa + j];
    float dh = dh_in[j] + d_out[j];
    float dn = dh * (1.f - z) * (1.f - nv * nv);
    float dr = dn * hn * r * (1.f - r);
    float dz = dh * (h_prev[j] - nv) * z * (1.f - z);
    d_hw[j] = dr;
    d_p[j] = dr;
    d_hw[sz + j] = dz;
    d_p[sz + j] = dz;
    d_p[2 * sz + j] = dn;
    d_hw[2 * sz + j] = dn * r;
    dh_direct[j] = dh * z;
  }
}

// GRU step, reset before the matmul (Cho et al. 2014), in two halves around the product
// (r * h) W_hn, which reads every unit of r * h. First: r and z from hw = h W_h{r,z}; rh out:
// r * h; acts out: r, z.
RNNJAX_ROW static void GruBeforeRowGates(int64_t n, const float* R p, int64_t sp,
                                         const float* R bias, int64_t sb, const float* R hw,
                                         int64_t shw, const float* R h, float* R rh,
                                         float* R acts, int64_t sa) {
  for (int64_t j = 0; j < n; ++j) {
    float r = Sigmoid(p[j] + bias[j] + hw[j]);
    float z = Sigmoid(p[sp + j] + bias[sb + j] + hw[shw + j]);
    rh[j] = r * h[j];
    acts[j] = r;
    acts[sa + j] = z;
  }
}

// Second: n from p_n (bias_n) and rhw = (r * h) W_hn; acts in: z; acts out: n.
RNNJAX_ROW static void GruBeforeRowNew(int64_t n, const float* R p_n, const float* R bias_n,
                                       const float* R rhw, const float* R h, float* R h_new,
                                       float* R out, float* R acts, int64_t sa) {
  for (int64_t j = 0; j < n; ++j) {
    float z = acts[sa + j];
    float nv = Tanh(p_n[j] + bias_n[j] + rhw[j]);
    float hv = (1.f - z) * nv + z * h[j];
    h_new[j] = hv;
    out[j] = hv;
    acts[2 * sa + j] = nv;
  }
}

// Its VJP, in two halves around d(r * h) = dn W_hn^T. First: the cotangents of the z and n
// pre-activations (dz: the z block of dz_out, dn its n block) and dh_direct = z * dh.
RNNJAX_ROW static void GruBeforeRowGradNew(int64_t n, const float* R acts, int64_t sa,
                                           const float* R h_prev, const float* R dh_in,
                                           const float* R d_out, float* R dz_out, int64_t sz,
                                           float* R dh_direct) {
  for (int64_t j = 0; j < n; ++j) {
    float z = acts[sa + j], nv = acts[2 * sa + j];
    float dh = dh_in[j] + d_out[j];
    dz_out[sz + j] = dh * (h_prev[j] - nv) * z * (1.f - z);
    dz_out[2 * sz + j] = dh * (1.f - z) * (1.f - nv * nv);
    dh_direct[j] = dh * z;
  }
}

// Second: from d_rh = d(r * h), the r pre-activation's cotangent, and r * d_rh into dh_direct.
RNNJAX_ROW static void GruBeforeRowGradGates(int64_t n, const float* R acts,
                                             const float* R h_prev, const float* R d_rh,
                                             float* R dr, float* R dh_direct) {
  for (int64_t j = 0; j < n; ++j) {
    float r = acts[j];
    dr[j] = d_rh[j] * h_prev[j] * r * (1.f - r);
    dh_direct[j] += d_rh[j] * r;
  }
}

// Elman step: the new state (tanh or relu of the pre-activation), also the output and the one
// activation the backward pass reads (from the output).
RNNJAX_ROW static void ElmanRow(int64_t n, const float* R p, const float* R bias,
                                const float* R hw, bool relu, float* R h_new, float* R out) {
  if (relu) {
    for (int64_t j = 0; j < n; ++j) {
      float a = p[j] + bias[j] + hw[j];
      a = a < 0.f ? 0.f : a;  // jax.nn.relu: NaN stays NaN
      h_new[j] = a;
      out[j] = a;
    }
  } else {
    for (int64_t j = 0; j < n; ++j) {
      float a = Tanh(p[j] + bias[j] + hw[j]);
      h_new[j] = a;
      out[j] = a;
    }
  }
}

RNNJAX_ROW static void ElmanRowGrad(int64_t n, const float* R acts, const float* R dh_in,
                                    const float* R d_out, bool relu, float* R dz) {
  if (relu) {
    // jax.nn.relu's derivative selects: 0 where the unit is not positive (NaN included), even
    // where the incoming cotangent is NaN or inf (a product 0 * NaN would give NaN).
    for (int64_t j = 0; j < n; ++j) dz[j] = acts[j] > 0.f ? dh_in[j] + d_out[j] : 0.f;
  } else {
    for (int64_t j = 0; j < n; ++j) dz[j] = (dh_in[j] + d_out[j]) * (1.f - acts[j] * acts[j]);
  }
}

// sum[j] += a[r, j] over rows r (a's rows `lda` floats apart).
RNNJAX_ROW static void AddRows(int64_t rows, int64_t n, const float* R a, int64_t lda,
                               float* R sum) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) sum[j] += a[r * lda + j];
}

#undef R

}  // namespace rnnjax

#endif  // RNNJAX_CSRC_GATE_MATH_H_
