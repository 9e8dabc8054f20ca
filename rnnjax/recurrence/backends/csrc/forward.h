// The forward kernel (cpu_recurrence.cc describes the plan): each rank's units of every step, and
// the FFI handler that checks the buffers and runs the team.

#ifndef RNNJAX_CSRC_FORWARD_H_
#define RNNJAX_CSRC_FORWARD_H_

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "bf16.h"
#include "blas.h"
#include "gate_math.h"
#include "huge_pages.h"
#include "kernel_shape.h"
#include "profile.h"
#include "team.h"
#include "xla/ffi/api/ffi.h"

namespace rnnjax {

namespace ffi = xla::ffi;

struct ForwardArgs {
  Shape s;
  int32_t kind;
  bool reverse, keep;
  // kBf16Gemm, kBf16Kernel and kBf16Rounded: the operands of the step's two matmuls of the
  // cell, x @ W_ih and h @ W_hh, rounded to bfloat16 (MixedPrecisionCell), their products summed
  // in float32, by MKL's bf16 GEMM (fast where the CPU has bf16 units), by rnnjax's own
  // (bf16_kernel.h: CPUs with AVX512-BF16) or by float32 GEMMs of the rounded values (the same
  // numbers, at float32 speed, on any CPU and BLAS); all else in float32, the
  // reset-before GRU's (r * h) W_hn and the LSTM's projection included (as the policy leaves
  // the matmuls inside the cell's pointwise step).
  int32_t bf16;
  const float *x, *w_ih, *bias, *w_hh, *w_hr, *b_hn, *h0, *c0;
  const uint8_t* valid;
  float *out, *h_last, *c_last, *acts, *prev_c;
};


// What the ranks share with bf16: the state h rounded (entering the step and leaving it, as
// h_buffers), as bf16 for kBf16Gemm and kBf16Kernel and as float for kBf16Rounded; and their
// chunk of x
// (kBf16Rounded's is the float x_chunk).
struct Bf16Buffers {
  std::vector<uint16_t> x_chunk, h[2];
  std::vector<float> h_rounded[2];
};

// Rows `mine` (of m * B, time-major: step t_lo + r / B, example r % B) of x, rounded to bf16
// into `chunk` (uint16_t: bf16; float: bf16 values as float), from either layout.
template <typename T>
inline void RoundRows(const float* x, const Shape& s, int64_t t_lo, Range mine, T* chunk) {
  for (int64_t r = mine.begin; r < mine.end; ++r) {
    const float* row = x + s.IoRow(t_lo + r / s.B, r % s.B) * s.I;
    if constexpr (std::is_same_v<T, uint16_t>) {
      ToBf16Row(s.I, row, chunk + r * s.I);
    } else {
      RoundBf16Row(s.I, row, chunk + r * s.I);
    }
  }
}

// Rank's part of the forward pass: units U of every gate, all rows, all steps. rh [B, H]:
// reset-before's r * h, which every rank reads whole (a second barrier per step); likewise a
// projected LSTM's o * tanh(c) in rh, whose projection's columns V the rank computes.
inline void ForwardPart(const ForwardArgs& a, Barrier& barrier, std::vector<float>* h_buffers,
                        std::vector<float>* c_buffers, float* x_chunk, float* rh,
                        Bf16Buffers* bf16, int rank, int threads, PhaseClock& clock) {
  const Shape& s = a.s;
  const int64_t B = s.B, H = s.H, P = s.P, G = s.G, A = s.A, C = ChunkSteps(s, a.keep);
  const Range u = Share(H, rank, threads), v = Share(P, rank, threads);
  const int64_t n = u.size(), width = G * n;  // this rank's columns of the projection and hw
  const bool mkl16 = a.bf16 == kBf16Gemm, builtin = a.bf16 == kBf16Kernel;
  const bool gemm16 = mkl16 || builtin, rounded = a.bf16 == kBf16Rounded;
  // The leading dimension of the rank's copies of the weights (PaddedStride); bf16 keeps them
  // dense (its conversions run over whole matrices), short calls too (one thread then reads the
  // weights in place). Padding the rows of the projections and hw as well measured no faster.
  const int64_t ldw = a.bf16 || !PackPays(s) ? width : PaddedStride(width);
  const bool lstm = a.kind == kLstm, before = a.kind == kGruBefore, projected = s.projected();
  std::vector<float> w_ih_copy, w_hh_copy;
  const float* w_ih_u = GateColumns(a.w_ih, s.I, s, u, ldw, &w_ih_copy);
  const float* w_hh_u = GateColumns(a.w_hh, P, s, u, ldw, &w_hh_copy);
  std::vector<uint16_t> w_ih16(mkl16 ? s.I * width : 0), w_hh16(mkl16 ? P * width : 0);
  std::vector<float> w_ih_r(rounded ? s.I * width : 0), w_hh_r(rounded ? P * width : 0);
  if (mkl16) {
    ToBf16Row(s.I * width, w_ih_u, w_ih16.data());
    ToBf16Row(P * width, w_hh_u, w_hh16.data());
  } else if (rounded) {
    RoundBf16Row(s.I * width, w_ih_u, w_ih_r.data());
    RoundBf16Row(P * width, w_hh_u, w_hh_r.data());
  }
  const float* w_ih_step = rounded ? w_ih_r.data() : w_ih_u;  // the input projection's weight
  // Reset-before: h multiplies the r and z blocks only, and r * h the n block.
  const int64_t step_columns = before ? 2 * n : width;
  const RightOperand w_step(B, gemm16 ? 0 : step_columns, P, rounded ? w_hh_r.data() : w_hh_u,
                            ldw, false, PackPays(s));
  // The bf16 products' weights: MKL's in bf16, or rnnjax's kernel's (bf16_kernel.h), rounded
  // and packed from float32.
  const RightOperandBf16 w_step16 =
      builtin ? RightOperandBf16::Builtin(B, step_columns, P, w_hh_u, ldw)
              : RightOperandBf16(B, mkl16 ? step_columns : 0, P, w_hh16.data(), width, PackPays(s));
  const RightOperandBf16 w_input16 =
      builtin ? RightOperandBf16::Builtin(C * B, width, s.I, w_ih_u, ldw)
              : RightOperandBf16(C * B, mkl16 ? width : 0, s.I, w_ih16.data(), width, false);
  const RightOperand w_proj(B, projected ? v.size() : 0, H, a.w_hr + v.begin, P, false,
                            PackPays(s));
  std::vector<float> unused_out(projected ? n : 0);  // a projected LSTM's out is h_P's
  const RightOperand w_reset(B, before ? n : 0, H, w_hh_u + 2 * n, ldw, false, PackPays(s));
  const bool acts_kept = a.keep && KeptActsPerUnit(a.kind) > 0;
  std::vector<float> proj(C * B * width), hw(B * width);
  // Reset-before's r and z between its two halves, per example, where none are kept; the other
  // cells keep no activations then (nullptr).
  std::vector<float> scratch_acts(before && !acts_kept ? B * A * H : 0);
  float *h = h_buffers[0].data(), *h_new = h_buffers[1].data();
  float *c = c_buffers[0].data(), *c_new = c_buffers[1].data();
  const Range state = projected ? v : u;  // the rank's columns of h
  uint16_t *h16 = bf16->h[0].data(), *h16_new = bf16->h[1].data();
  float *h_r = bf16->h_rounded[0].data(), *h_r_new = bf16->h_rounded[1].data();
  auto round_state = [&](const float* from, uint16_t* to16, float* to) {
    for (int64_t b = 0; b < B; ++b) {
      const float* row = from + b * P + state.begin;
      if (gemm16) ToBf16Row(state.size(), row, to16 + b * P + state.begin);
      if (rounded) RoundBf16Row(state.size(), row, to + b * P + state.begin);
    }
  };
  clock.Lap(kSetup);
  if (a.bf16) {
    round_state(h, h16, h_r);
    clock.Wait(kInput, barrier);  // every rank's first product reads all of h0
  }
  for (int64_t k = 0; k < s.T; k += C) {  // processing steps k .. k + m - 1
    const int64_t m = std::min(C, s.T - k);
    const int64_t t_lo = std::min(TimeAt(k, s, a.reverse), TimeAt(k + m - 1, s, a.reverse));
    const float* x = a.x + t_lo * B * s.I;
    if (gemm16) {  // every rank rounds its share of the chunk's rows, then reads all
      RoundRows(a.x, s, t_lo, Share(m * B, rank, threads, 1), bf16->x_chunk.data());
      clock.Wait(kInput, barrier);
    } else if (rounded) {  // likewise, into the float chunk
      RoundRows(a.x, s, t_lo, Share(m * B, rank, threads, 1), x_chunk);
      clock.Wait(kInput, barrier);
      x = x_chunk;
    } else if (s.batch_major) {  // likewise: every rank gathers its share, then reads all
      GatherRows(a.x, s, t_lo, Share(m * B, rank, threads, 1), x_chunk);
      clock.Wait(kInput, barrier);
      x = x_chunk;
    }
    if (gemm16) {
      w_input16.Multiply(m * B, bf16->x_chunk.data(), s.I, proj.data(), width);
    } else {
      Gemm(false, false, m * B, width, s.I, x, s.I, w_ih_step, ldw, 0.f, proj.data(), width);
    }
    clock.Lap(kInput);
    for (int64_t step = k; step < k + m; ++step) {
      const int64_t t = TimeAt(step, s, a.reverse);
      if (gemm16) {
        w_step16.Multiply(h16, P, hw.data(), width);
      } else {
        w_step.Multiply(rounded ? h_r : h, P, 0.f, hw.data(), width);
      }
      clock.Lap(kProduct);
      for (int64_t b = 0; b < B; ++b) {
        const int64_t row = t * B + b, at = b * H + u.begin;
        if (a.keep && lstm) std::copy_n(c + at, n, a.prev_c + row * H + u.begin);
        float* out = projected ? nullptr : a.out + s.IoRow(t, b) * H + u.begin;
        if (!a.valid[row]) {
          if (!projected) {  // a projected state is carried after the projection
            std::copy_n(h + at, n, h_new + at);
            std::fill_n(out, n, 0.f);
          }
          if (lstm) std::copy_n(c + at, n, c_new + at);
          if (before) std::fill_n(rh + at, n, 0.f);
          continue;
        }
        const float* p = proj.data() + ((t - t_lo) * B + b) * width;
        const float* hwb = hw.data() + b * width;
        const float* bias = a.bias + u.begin;
        float* acts = acts_kept ? a.acts + row * A * H + u.begin
                      : before  ? scratch_acts.data() + b * A * H + u.begin
                                : nullptr;
        if (projected) {
          LstmRow(n, p, n, bias, H, hwb, n, c + at, rh + at, c_new + at, unused_out.data(), acts,
                  H);
        } else if (lstm) {
          LstmRow(n, p, n, bias, H, hwb, n, c + at, h_new + at, c_new + at, out, acts, H);
        } else if (a.kind == kGru) {
          GruRow(n, p, n, bias, H, hwb, n, a.b_hn + u.begin, h + at, h_new + at, out, acts, H);
        } else if (before) {
          GruBeforeRowGates(n, p, n, bias, H, hwb, n, h + at, rh + at, acts, H);
        } else {
          ElmanRow(n, p, bias, hwb, a.kind == kRelu, h_new + at, out);
        }
      }
      if (before) {
        clock.Wait(kGates, barrier);  // r * h is complete: every (r * h) W_hn reads all of it
        w_reset.Multiply(rh, H, 0.f, hw.data() + 2 * n, width);
        clock.Lap(kProduct);
        for (int64_t b = 0; b < B; ++b) {
          const int64_t row = t * B + b, at = b * H + u.begin;
          if (!a.valid[row]) continue;
          const float* p = proj.data() + ((t - t_lo) * B + b) * width;
          float* acts = (acts_kept ? a.acts + row * A * H : &scratch_acts[b * A * H]) + u.begin;
          GruBeforeRowNew(n, p + 2 * n, a.bias + 2 * H + u.begin, hw.data() + b * width + 2 * n,
                          h + at, h_new + at, a.out + s.IoRow(t, b) * H + u.begin, acts, H);
        }
      }
      if (projected) {
        clock.Wait(kGates, barrier);  // o * tanh(c) is complete: every column of h_P reads it
        w_proj.Multiply(rh, H, 0.f, h_new + v.begin, P);
        clock.Lap(kProduct);
        for (int64_t b = 0; b < B; ++b) {
          float* h_p = h_new + b * P + v.begin;
          float* out = a.out + s.IoRow(t, b) * P + v.begin;
          if (a.valid[t * B + b]) {
            std::copy_n(h_p, v.size(), out);
          } else {
            std::copy_n(h + b * P + v.begin, v.size(), h_p);
            std::fill_n(out, v.size(), 0.f);
          }
        }
      }
      if (a.bf16) {
        round_state(h_new, h16_new, h_r_new);
        std::swap(h16, h16_new);
        std::swap(h_r, h_r_new);
      }
      std::swap(h, h_new);
      std::swap(c, c_new);
      clock.Wait(kGates, barrier);  // the new state is complete: every next product reads it all
    }
  }
  for (int64_t b = 0; b < B; ++b) {
    std::copy_n(h + b * P + state.begin, state.size(), a.h_last + b * P + state.begin);
    if (lstm) std::copy_n(c + b * H + u.begin, n, a.c_last + b * H + u.begin);
  }
}

// Forward. keep (training) fills acts [T, B, A*H] and (LSTM) prev_c [T, B, H], the cell state
// states entering each step; otherwise those outputs have zero size.
inline ffi::Error Forward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w_ih,
                          ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::F32> w_hh,
                          ffi::Buffer<ffi::F32> w_hr, ffi::Buffer<ffi::F32> b_hn,
                          ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> c0,
                          ffi::Buffer<ffi::U8> valid, ffi::ResultBuffer<ffi::F32> out,
                          ffi::ResultBuffer<ffi::F32> h_last, ffi::ResultBuffer<ffi::F32> c_last,
                          ffi::ResultBuffer<ffi::F32> acts, ffi::ResultBuffer<ffi::F32> prev_c,
                          int32_t kind, bool reverse, bool keep, bool batch_major,
                          int32_t threads, int32_t bf16, int32_t blas) {
  return Guarded([&]() -> ffi::Error {
    Shape s;
    if (auto e = ShapeOf(x, w_ih, w_hh, w_hr, valid, kind, batch_major, threads, blas, &s);
        e.failure())
      return e;
    const bool lstm = kind == kLstm;
    if (bf16 < kFloat32 || bf16 > kBf16Kernel)
      return ffi::Error::InvalidArgument("rnnjax: bf16 must be 0, 1, 2 or 3");
    if (bf16 == kBf16Kernel && !Bf16KernelRuns())
      return ffi::Error::InvalidArgument(
          "rnnjax: bf16 = 3 needs a CPU with AVX512-BF16 and a build with rnnjax's bf16 kernel");
    if (bf16 == kBf16Gemm && !g_blas_tables[blas].has_bf16())
      return ffi::Error::InvalidArgument(
          "rnnjax: bf16 needs MKL's cblas_gemm_bf16bf16f32 (the mkl wheel); this BLAS has none");
    // state: h's elements [B, P]; cells: c's [B, H] (P = H but for a projected LSTM)
    const int64_t kept = keep ? s.T : 0, state = s.B * s.P, cells = s.B * s.H;
    RNNJAX_EXPECT("bias", bias.element_count(), s.GH());
    RNNJAX_EXPECT("b_hn", b_hn.element_count(), s.H);
    RNNJAX_EXPECT("h0", h0.element_count(), state);
    RNNJAX_EXPECT("c0", c0.element_count(), lstm ? cells : 0);
    RNNJAX_EXPECT("out", out->element_count(), s.T * state);
    RNNJAX_EXPECT("h_last", h_last->element_count(), state);
    RNNJAX_EXPECT("c_last", c_last->element_count(), lstm ? cells : 0);
    RNNJAX_EXPECT("acts", acts->element_count(), kept * s.B * KeptActsPerUnit(kind) * s.H);
    RNNJAX_EXPECT("prev_c", prev_c->element_count(), lstm ? kept * cells : 0);
    if (s.T == 0 || s.B == 0) {  // nothing to run: the final state is the initial one
      std::copy_n(h0.typed_data(), state, h_last->typed_data());
      if (lstm) std::copy_n(c0.typed_data(), cells, c_last->typed_data());
      return ffi::Error::Success();
    }
    ForwardArgs a{s,
                  kind,
                  reverse,
                  keep,
                  bf16,
                  x.typed_data(),
                  w_ih.typed_data(),
                  bias.typed_data(),
                  w_hh.typed_data(),
                  w_hr.typed_data(),
                  b_hn.typed_data(),
                  h0.typed_data(),
                  lstm ? c0.typed_data() : nullptr,
                  valid.typed_data(),
                  out->typed_data(),
                  h_last->typed_data(),
                  lstm ? c_last->typed_data() : nullptr,
                  acts->typed_data(),
                  lstm ? prev_c->typed_data() : nullptr};
    std::vector<float> h_buffers[2] = {std::vector<float>(a.h0, a.h0 + state),
                                       std::vector<float>(state)};
    std::vector<float> c_buffers[2] = {
        lstm ? std::vector<float>(a.c0, a.c0 + cells) : std::vector<float>(),
        std::vector<float>(lstm ? cells : 0)};
    const bool rounded = bf16 == kBf16Rounded;
    std::vector<float> x_chunk(s.batch_major || rounded ? ChunkSteps(s, keep) * s.B * s.I : 0);
    std::vector<float> rh(kind == kGruBefore || s.projected() ? cells : 0);
    Bf16Buffers shared16;
    if (bf16 == kBf16Gemm || bf16 == kBf16Kernel) {
      shared16.x_chunk.resize(ChunkSteps(s, keep) * s.B * s.I);
      shared16.h[0].resize(state);
      shared16.h[1].resize(state);
    } else if (rounded) {
      shared16.h_rounded[0].resize(state);
      shared16.h_rounded[1].resize(state);
    }
    if (!keep) AdviseHugePages(a.out, out->element_count() * sizeof(float));  // huge_pages.h
    std::lock_guard<std::mutex> lock(g_call_mutex);
    g_blas = g_blas_tables[blas];
    const std::string error = RunProfiledTeam(
        threads, "forward", s, kind, keep, bf16,
        [&](int rank, int size, Barrier& barrier, PhaseClock& clock) {
          OneBlasThread one;
          ForwardPart(a, barrier, h_buffers, c_buffers, x_chunk.data(), rh.data(), &shared16,
                      rank, size, clock);
        });
    if (!error.empty()) return ffi::Error::Internal("rnnjax_forward: " + error);
    return ffi::Error::Success();
  });
}

}  // namespace rnnjax

#endif  // RNNJAX_CSRC_FORWARD_H_
