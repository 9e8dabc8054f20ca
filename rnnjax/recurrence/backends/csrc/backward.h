// The backward kernel (cpu_recurrence.cc describes the plan): each rank's gate-math VJP and state
// gradient per step, its share of the weight and input gradients per chunk, and the FFI handler.

#ifndef RNNJAX_CSRC_BACKWARD_H_
#define RNNJAX_CSRC_BACKWARD_H_

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "bf16.h"
#include "bf16_gradients.h"
#include "bf16_kernel.h"
#include "blas.h"
#include "gate_math.h"
#include "kernel_shape.h"
#include "profile.h"
#include "team.h"
#include "xla/ffi/api/ffi.h"

namespace rnnjax {

namespace ffi = xla::ffi;

struct BackwardArgs {
  Shape s;
  int32_t kind;
  bool reverse;
  // Not kFloat32: the products of the cell's two matmuls' transposes, the step's dh += dZ_t @
  // W_hh^T and the chunk's dW_hh = H^T dZ, dW_ih = X^T dZ, dX = dZ W_ih^T, round both operands
  // to bf16 and sum in float32, as the forward's h @ W_hh and x @ W_ih (kBf16Kernel with
  // rnnjax's kernel, else float32 GEMMs of the rounded values); the rest (biases, reset-before's
  // (r * h) W_hn, the projection's) stays float32 as in the forward.
  int32_t bf16;
  const float *x, *w_ih, *w_hh, *w_hr, *acts, *out, *h0, *prev_c, *d_out, *dh_last, *dc_last;
  const uint8_t* valid;
  float *dx, *dw_ih, *dw_hh, *dw_hr, *db_proj, *db_hw, *dh0, *dc0;
  // The state entering step t of example b is the output of its last valid step before t (a
  // padded step carries the state): entered[t * B + b] is that step's time, or -1 for h0. So
  // the forward pass keeps no [T, B, H] copy of the states.
  std::vector<int64_t> entered;

  const float* StateEntering(int64_t t, int64_t b) const {
    const int64_t before = entered[t * s.B + b];
    return before < 0 ? h0 + b * s.P : out + s.IoRow(before, b) * s.P;
  }
};

inline std::vector<int64_t> EnteringSteps(const Shape& s, const uint8_t* valid, bool reverse) {
  std::vector<int64_t> entered(s.T * s.B);
  for (int64_t b = 0; b < s.B; ++b) {
    int64_t last = -1;
    for (int64_t step = 0; step < s.T; ++step) {
      const int64_t t = TimeAt(step, s, reverse);
      entered[t * s.B + b] = last;
      if (valid[t * s.B + b]) last = t;
    }
  }
  return entered;
}

struct BackwardShared {
  std::vector<float> dh[2], dc[2];
  // The chunk's cotangents [C * B, GH], rows PaddedStride(GH) apart; d_proj: GRU only.
  std::vector<float> d_hw, d_proj;
  std::vector<float> x_chunk, dx_chunk;  // batch_major: the chunk's x and dx rows, time-major
  std::vector<float> h_chunk;            // the states entering the chunk's steps [C * B, P]
  std::vector<float> d_rh, rh_chunk;  // reset-before: d(r * h) of a step [B, H]; r * h [C * B, H]
  // A projected LSTM: the cotangents of h_P [C * B, P] and of o * tanh(c) of a step [B, H] (in
  // d_rh), and o * tanh(c) of the chunk's steps [C * B, H] (in rh_chunk) for dW_hr.
  std::vector<float> d_state_chunk;
  std::vector<float> w_ih_rows;  // W_ih with padded rows for dX, where its own lie 4 KiB apart
  // bf16: a step's dZ rounded, [B, GH] as bf16 (kBf16Kernel) or [B, ldz] as float (else); two
  // of each, for alternate steps: a rank may round the next step's while another still reads.
  std::vector<uint16_t> dz16[2];
  std::vector<float> dz_rounded[2];
};

// o * tanh(c) of every unit of a projected LSTM's step, from its kept gates and entering c.
inline void UnprojectedOutput(const float* acts, const float* prev_c, int64_t H, float* row) {
  for (int64_t j = 0; j < H; ++j) {
    const float i = acts[j], f = acts[H + j], g = acts[2 * H + j], o = acts[3 * H + j];
    row[j] = o * Tanh(f * prev_c[j] + i * g);
  }
}

// Rank's part of the backward pass: per step the gate-math VJP of units U and dh[:, U]; per
// chunk its share of the weight-gradient columns and of the input-gradient rows.
inline void BackwardPart(const BackwardArgs& a, Barrier& barrier, BackwardShared& shared, int rank,
                         int threads, PhaseClock& clock) {
  const Shape& s = a.s;
  const int64_t B = s.B, H = s.H, P = s.P, I = s.I, GH = s.GH(), A = s.A, C = ChunkSteps(s, true);
  const int64_t ldz = PaddedStride(GH);  // of d_hw, d_proj and the rank's rows of W_hh
  const Range u = Share(H, rank, threads), v = Share(P, rank, threads);
  const int64_t n = u.size();
  const bool lstm = a.kind == kLstm, gru = a.kind == kGru, before = a.kind == kGruBefore;
  const bool projected = s.projected();
  // The rank's columns of the state h: the units U, or a projected LSTM's columns V of h_P.
  const Range mine_h = projected ? v : u;
  // dh[:, U] = dZ_t @ W_hh[U, :]^T: the rows U of W_hh, transposed (reset-before: of the r and
  // z blocks; its n block gives d(r * h)[:, U] = dn_t @ W_hn[U, :]^T first).
  // The rows of W_hh the rank multiplies by, copied with padded rows where W_hh's own lie a
  // multiple of 4 KiB apart (PaddedStride: 15-20% faster products on a Zen 4 EPYC).
  const float* w_hh_mine = a.w_hh + mine_h.begin * GH;
  std::vector<float> w_hh_rows(ldz == GH ? 0 : mine_h.size() * ldz);
  for (int64_t r = 0; r < mine_h.size() && ldz != GH; ++r)
    std::copy_n(w_hh_mine + r * GH, GH, w_hh_rows.data() + r * ldz);
  if (ldz != GH) w_hh_mine = w_hh_rows.data();
  const bool builtin = a.bf16 == kBf16Kernel, rounded = a.bf16 != kFloat32 && !builtin;
  const int64_t back_k = before ? 2 * H : GH;  // the columns of dZ_t the product reads
  std::vector<float> w_hh_rounded(rounded ? mine_h.size() * ldz : 0);
  for (int64_t r = 0; r < mine_h.size() && rounded; ++r)
    RoundBf16Row(back_k, w_hh_mine + r * ldz, w_hh_rounded.data() + r * ldz);
  const RightOperand w_back(B, builtin ? 0 : mine_h.size(), back_k,
                            rounded ? w_hh_rounded.data() : w_hh_mine, ldz, true, PackPays(s));
  const Bf16PackedMatrix w_back16 =
      builtin ? Bf16PackedMatrix(back_k, mine_h.size(), w_hh_mine, ldz, /*transposed=*/true)
              : Bf16PackedMatrix();
  // The rank's columns of dZ_t (units U of each gate the product reads), rounded for all ranks.
  auto round_dz = [&](const float* dz, int64_t parity) {
    for (int64_t b = 0; b < B && a.bf16 != kFloat32; ++b) {
      for (int64_t at = u.begin; at < back_k; at += H) {
        const float* from = dz + b * ldz + at;
        if (builtin) ToBf16Row(n, from, shared.dz16[parity].data() + b * GH + at);
        if (rounded) RoundBf16Row(n, from, shared.dz_rounded[parity].data() + b * ldz + at);
      }
    }
  };
  // A projected LSTM: d(o * tanh(c))[:, U] = dh_P_t @ W_hr[U, :]^T.
  const RightOperand w_proj_back(B, projected ? n : 0, P, a.w_hr + u.begin * P, P, true,
                                 PackPays(s));
  const std::vector<float> no_d_out(projected ? n : 0, 0.f);  // folded into dh_P_t
  // Reset-before has no projection: its rows U are mine_h.
  const RightOperand w_reset_back(B, before ? n : 0, H, w_hh_mine + 2 * H, ldz, true,
                                  PackPays(s));
  float *dh = shared.dh[0].data(), *dh_new = shared.dh[1].data();
  float *dc = shared.dc[0].data(), *dc_new = shared.dc[1].data();
  float* d_hw = shared.d_hw.data();
  float* d_proj = gru ? shared.d_proj.data() : d_hw;  // equal unless the cell is a GRU
  const Range cols = Share(GH, rank, threads), no_cols{0, 0};
  const bool ih_padded = !shared.w_ih_rows.empty();
  const float* w_ih = ih_padded ? shared.w_ih_rows.data() : a.w_ih;
  const int64_t ld_ih = ih_padded ? ldz : GH;
  const int64_t chunks = (s.T + C - 1) / C;
  RoundedProducts rounded_products(builtin, a.bf16 != kFloat32 ? I : 0, GH, a.w_ih, GH);
  clock.Lap(kSetup);
  for (int64_t ci = chunks - 1; ci >= 0; --ci) {  // the forward's chunks, last first
    const int64_t k = ci * C, m = std::min(C, s.T - k);
    const int64_t t_lo = std::min(TimeAt(k, s, a.reverse), TimeAt(k + m - 1, s, a.reverse));
    for (int64_t step = k + m - 1; step >= k; --step) {
      const int64_t t = TimeAt(step, s, a.reverse);
      float* dhw_t = d_hw + (t - t_lo) * B * ldz;
      float* dp_t = d_proj + (t - t_lo) * B * ldz;
      if (projected) {  // dh_P_t = dh_P + d_out (zero where padded), then its product
        float* d_state_t = shared.d_state_chunk.data() + (t - t_lo) * B * P;
        for (int64_t b = 0; b < B; ++b) {
          const int64_t at = b * P + v.begin;
          float* total = d_state_t + at;
          if (a.valid[t * B + b]) {
            const float* d_out = a.d_out + s.IoRow(t, b) * P + v.begin;
            for (int64_t j = 0; j < v.size(); ++j) total[j] = dh[at + j] + d_out[j];
            std::fill_n(dh_new + at, v.size(), 0.f);
          } else {  // a padded step passes dh_P through
            std::fill_n(total, v.size(), 0.f);
            std::copy_n(dh + at, v.size(), dh_new + at);
          }
        }
        clock.Wait(kGates, barrier);  // dh_P_t is complete: every rank's product reads all of it
        w_proj_back.Multiply(d_state_t, P, 0.f, shared.d_rh.data() + u.begin, H);
        clock.Lap(kProduct);
      }
      for (int64_t b = 0; b < B; ++b) {
        const int64_t row = t * B + b, at = b * H + u.begin;
        float* dhw_b = dhw_t + b * ldz + u.begin;
        if (!a.valid[row]) {  // a padded step passes the state cotangents through
          for (int64_t g = 0; g < s.G; ++g) {
            std::fill_n(dhw_b + g * H, n, 0.f);
            if (gru) std::fill_n(dp_t + b * ldz + u.begin + g * H, n, 0.f);
          }
          if (!projected) std::copy_n(dh + at, n, dh_new + at);
          if (lstm) std::copy_n(dc + at, n, dc_new + at);
          continue;
        }
        const int64_t io_row = s.IoRow(t, b);
        // An Elman layer's activations are its outputs, laid out as they are.
        const bool elman = a.kind == kTanh || a.kind == kRelu;
        const float* acts = a.acts + (elman ? io_row : row) * A * H + u.begin;
        const float* d_out = projected ? nullptr : a.d_out + io_row * H + u.begin;
        if (projected) {
          LstmRowGrad(n, acts, H, a.prev_c + row * H + u.begin, shared.d_rh.data() + at,
                      no_d_out.data(), dc + at, dc_new + at, dhw_b, H);
        } else if (lstm) {
          LstmRowGrad(n, acts, H, a.prev_c + row * H + u.begin, dh + at, d_out, dc + at,
                      dc_new + at, dhw_b, H);
          std::fill_n(dh_new + at, n, 0.f);
        } else if (gru) {
          GruRowGrad(n, acts, H, a.StateEntering(t, b) + u.begin, dh + at, d_out, dhw_b,
                     dp_t + b * ldz + u.begin, H, dh_new + at);
        } else if (before) {
          GruBeforeRowGradNew(n, acts, H, a.StateEntering(t, b) + u.begin, dh + at, d_out, dhw_b, H,
                              dh_new + at);
        } else {
          ElmanRowGrad(n, acts, dh + at, d_out, a.kind == kRelu, dhw_b);
          std::fill_n(dh_new + at, n, 0.f);
        }
      }
      const int64_t parity = step % 2;
      if (!before) round_dz(dhw_t, parity);
      clock.Wait(kGates, barrier);  // dZ_t is complete: every rank's product reads all of it
      if (before) {
        float* d_rh = shared.d_rh.data();
        w_reset_back.Multiply(dhw_t + 2 * H, ldz, 0.f, d_rh + u.begin, H);
        clock.Lap(kProduct);
        for (int64_t b = 0; b < B; ++b) {
          const int64_t row = t * B + b, at = b * H + u.begin;
          if (!a.valid[row]) continue;
          GruBeforeRowGradGates(n, a.acts + row * A * H + u.begin, a.StateEntering(t, b) + u.begin,
                                d_rh + at, dhw_t + b * ldz + u.begin, dh_new + at);
        }
        round_dz(dhw_t, parity);
        clock.Wait(kGates, barrier);  // the r block of dZ_t is complete
      }
      if (builtin) {
        w_back16.Multiply(B, shared.dz16[parity].data(), GH, dh_new + mine_h.begin, P, true);
      } else {
        w_back.Multiply(rounded ? shared.dz_rounded[parity].data() : dhw_t, ldz, 1.f,
                        dh_new + mine_h.begin, P);
      }
      clock.Lap(kProduct);
      std::swap(dh, dh_new);
      std::swap(dc, dc_new);
    }
    // The chunk's weight and input gradients: columns (dW, db) or rows (dX) split over ranks.
    const int64_t rows = m * B;
    const Range mine = Share(rows, rank, threads, 1);
    // Every rank gathers its share of the chunk's rows (entering states; batch-major inputs),
    // then reads all of them. A padded row's dZ is zero: its state row is zeros, not garbage.
    for (int64_t r = mine.begin; r < mine.end; ++r) {
      const int64_t t = t_lo + r / B, b = r % B;
      float* row = shared.h_chunk.data() + r * P;
      if (a.valid[t * B + b]) {
        std::copy_n(a.StateEntering(t, b), P, row);
      } else {
        std::fill_n(row, P, 0.f);
      }
      if (projected) {  // o * tanh(c), the projection's input; zeros where padded
        float* unprojected = shared.rh_chunk.data() + r * H;
        if (a.valid[t * B + b]) {
          UnprojectedOutput(a.acts + (t * B + b) * A * H, a.prev_c + (t * B + b) * H, H,
                            unprojected);
        } else {
          std::fill_n(unprojected, H, 0.f);
        }
      }
      if (before) {  // r * h, the n block's recurrent input; zeros where padded (no r kept)
        const float* reset = a.acts + (t * B + b) * A * H;
        float* rh = shared.rh_chunk.data() + r * H;
        for (int64_t j = 0; j < H; ++j) rh[j] = a.valid[t * B + b] ? reset[j] * row[j] : 0.f;
      }
    }
    const float* x = a.x + t_lo * B * I;
    if (s.batch_major) {
      GatherRows(a.x, s, t_lo, mine, shared.x_chunk.data());
      x = shared.x_chunk.data();
    }
    clock.Wait(kWeights, barrier);
    // dW_hh: the entering states' columns, and reset-before's n block from r * h.
    const Range h_cols = before ? Intersect(cols, Range{0, 2 * H}) : cols;
    const Range rh_cols = before ? Intersect(cols, Range{2 * H, GH}) : no_cols;
    if (a.bf16 == kFloat32) {
      Gemm(true, false, P, h_cols.size(), rows, shared.h_chunk.data(), P, d_hw + h_cols.begin,
           ldz, 1.f, a.dw_hh + h_cols.begin, GH);
    } else {
      rounded_products.AddTN(P, h_cols.size(), rows, shared.h_chunk.data(), P,
                             d_hw + h_cols.begin, ldz, a.dw_hh + h_cols.begin, GH);
    }
    if (projected) {  // dW_hr += (o * tanh(c))^T dh_P, split by columns of P
      const Range p_cols = Share(P, rank, threads, 1);
      Gemm(true, false, H, p_cols.size(), rows, shared.rh_chunk.data(), H,
           shared.d_state_chunk.data() + p_cols.begin, P, 1.f, a.dw_hr + p_cols.begin, P);
    }
    Gemm(true, false, H, rh_cols.size(), rows, shared.rh_chunk.data(), H, d_hw + rh_cols.begin, ldz,
         1.f, a.dw_hh + rh_cols.begin, GH);
    if (a.bf16 == kFloat32) {
      Gemm(true, false, I, cols.size(), rows, x, I, d_proj + cols.begin, ldz, 1.f,
           a.dw_ih + cols.begin, GH);
    } else {
      rounded_products.AddTN(I, cols.size(), rows, x, I, d_proj + cols.begin, ldz,
                             a.dw_ih + cols.begin, GH);
    }
    if (a.dx != nullptr) {
      float* dx = s.batch_major ? shared.dx_chunk.data() : a.dx + t_lo * B * I;
      if (a.bf16 == kFloat32) {
        Gemm(false, true, mine.size(), I, GH, d_proj + mine.begin * ldz, ldz, w_ih, ld_ih, 0.f,
             dx + mine.begin * I, I);
      } else {
        rounded_products.TimesWT(mine.size(), d_proj + mine.begin * ldz, ldz, dx + mine.begin * I,
                                 I);
      }
      for (int64_t r = mine.begin; s.batch_major && r < mine.end; ++r)
        std::copy_n(dx + r * I, I, a.dx + s.IoRow(t_lo + r / B, r % B) * I);
    }
    AddRows(rows, cols.size(), d_proj + cols.begin, ldz, a.db_proj + cols.begin);
    const Range hw_cols = gru ? cols : no_cols;
    AddRows(rows, hw_cols.size(), d_hw + hw_cols.begin, ldz, a.db_hw + hw_cols.begin);
    clock.Wait(kWeights, barrier);  // the chunk buffers are read: the next may overwrite them
  }
  for (int64_t b = 0; b < B; ++b) {
    std::copy_n(dh + b * P + mine_h.begin, mine_h.size(), a.dh0 + b * P + mine_h.begin);
    if (lstm) std::copy_n(dc + b * H + u.begin, n, a.dc0 + b * H + u.begin);
  }
}

// Backward: dx [T, B, I] (zero-size unless need_dx: a first layer's inputs need none),
// dw_ih [I, GH], dw_hh [P, GH], dw_hr [H, P] (zero-size without projection), db_proj [GH] (the
// projection bias's cotangent), db_hw [GH] (GRU: that of h W_hh + b_hn, whose last H entries are
// b_hn's; zeros otherwise), dh0, dc0. An Elman layer passes its outputs as acts.
inline ffi::Error Backward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w_ih,
                           ffi::Buffer<ffi::F32> w_hh, ffi::Buffer<ffi::F32> w_hr,
                           ffi::Buffer<ffi::F32> acts, ffi::Buffer<ffi::F32> out,
                           ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> prev_c,
                           ffi::Buffer<ffi::U8> valid, ffi::Buffer<ffi::F32> d_out,
                           ffi::Buffer<ffi::F32> dh_last, ffi::Buffer<ffi::F32> dc_last,
                           ffi::ResultBuffer<ffi::F32> dx, ffi::ResultBuffer<ffi::F32> dw_ih,
                           ffi::ResultBuffer<ffi::F32> dw_hh, ffi::ResultBuffer<ffi::F32> dw_hr,
                           ffi::ResultBuffer<ffi::F32> db_proj, ffi::ResultBuffer<ffi::F32> db_hw,
                           ffi::ResultBuffer<ffi::F32> dh0, ffi::ResultBuffer<ffi::F32> dc0,
                           int32_t kind, bool reverse, bool need_dx, bool batch_major,
                           int32_t threads, int32_t bf16, int32_t blas) {
  return Guarded([&]() -> ffi::Error {
    Shape s;
    if (auto e = ShapeOf(x, w_ih, w_hh, w_hr, valid, kind, batch_major, threads, blas, &s);
        e.failure())
      return e;
    const bool lstm = kind == kLstm, gru = kind == kGru;
    if (bf16 < kFloat32 || bf16 > kBf16Kernel)
      return ffi::Error::InvalidArgument("rnnjax: bf16 must be 0, 1, 2 or 3");
    if (bf16 == kBf16Kernel && !Bf16KernelRuns())
      return ffi::Error::InvalidArgument(
          "rnnjax: bf16 = 3 needs a CPU with AVX512-BF16 and a build with rnnjax's bf16 kernel");
    // state: h's elements [B, P]; cells: c's [B, H] (P = H but for a projected LSTM)
    const int64_t state = s.B * s.P, steps = s.T * state, cells = s.B * s.H;
    RNNJAX_EXPECT("acts", acts.element_count(), s.T * cells * s.A);
    RNNJAX_EXPECT("out", out.element_count(), steps);
    RNNJAX_EXPECT("h0", h0.element_count(), state);
    RNNJAX_EXPECT("prev_c", prev_c.element_count(), lstm ? s.T * cells : 0);
    RNNJAX_EXPECT("d_out", d_out.element_count(), steps);
    RNNJAX_EXPECT("dh_last", dh_last.element_count(), state);
    RNNJAX_EXPECT("dc_last", dc_last.element_count(), lstm ? cells : 0);
    RNNJAX_EXPECT("dx", dx->element_count(), need_dx ? s.T * s.B * s.I : 0);
    RNNJAX_EXPECT("dw_ih", dw_ih->element_count(), s.I * s.GH());
    RNNJAX_EXPECT("dw_hh", dw_hh->element_count(), s.P * s.GH());
    RNNJAX_EXPECT("dw_hr", dw_hr->element_count(), w_hr.element_count());
    RNNJAX_EXPECT("db_proj", db_proj->element_count(), s.GH());
    RNNJAX_EXPECT("db_hw", db_hw->element_count(), s.GH());
    RNNJAX_EXPECT("dh0", dh0->element_count(), state);
    RNNJAX_EXPECT("dc0", dc0->element_count(), lstm ? cells : 0);
    BackwardArgs a{s,
                   kind,
                   reverse,
                   bf16,
                   x.typed_data(),
                   w_ih.typed_data(),
                   w_hh.typed_data(),
                   w_hr.typed_data(),
                   acts.typed_data(),
                   out.typed_data(),
                   h0.typed_data(),
                   lstm ? prev_c.typed_data() : nullptr,
                   d_out.typed_data(),
                   dh_last.typed_data(),
                   lstm ? dc_last.typed_data() : nullptr,
                   valid.typed_data(),
                   need_dx ? dx->typed_data() : nullptr,
                   dw_ih->typed_data(),
                   dw_hh->typed_data(),
                   dw_hr->typed_data(),
                   db_proj->typed_data(),
                   db_hw->typed_data(),
                   dh0->typed_data(),
                   lstm ? dc0->typed_data() : nullptr};
    std::fill_n(a.dw_ih, s.I * s.GH(), 0.f);
    std::fill_n(a.dw_hh, s.P * s.GH(), 0.f);
    std::fill_n(a.dw_hr, w_hr.element_count(), 0.f);
    std::fill_n(a.db_proj, s.GH(), 0.f);
    std::fill_n(a.db_hw, s.GH(), 0.f);
    if (s.T == 0 || s.B == 0) {  // the initial state's cotangents are the final state's
      std::copy_n(a.dh_last, state, a.dh0);
      if (lstm) std::copy_n(a.dc_last, cells, a.dc0);
      return ffi::Error::Success();
    }
    const int64_t ldz = PaddedStride(s.GH());  // d_hw's row stride (BackwardPart)
    const int64_t chunk = ChunkSteps(s, true) * s.B * ldz;
    BackwardShared shared;
    shared.dh[0].assign(a.dh_last, a.dh_last + state);
    shared.dh[1].resize(state);
    if (lstm) {
      shared.dc[0].assign(a.dc_last, a.dc_last + cells);
      shared.dc[1].resize(cells);
    }
    shared.d_hw.resize(chunk);
    if (need_dx && ldz != s.GH()) {
      shared.w_ih_rows.resize(s.I * ldz);
      for (int64_t r = 0; r < s.I; ++r)
        std::copy_n(a.w_ih + r * s.GH(), s.GH(), shared.w_ih_rows.data() + r * ldz);
    }
    if (gru) shared.d_proj.resize(chunk);
    for (int parity = 0; parity < 2; ++parity) {
      shared.dz16[parity].resize(bf16 == kBf16Kernel ? s.B * s.GH() : 0);
      shared.dz_rounded[parity].resize(bf16 == kBf16Rounded || bf16 == kBf16Gemm ? s.B * ldz : 0);
    }
    shared.h_chunk.resize(ChunkSteps(s, true) * state);
    if (kind == kGruBefore || s.projected()) {
      shared.d_rh.resize(cells);
      shared.rh_chunk.resize(ChunkSteps(s, true) * cells);
    }
    if (s.projected()) shared.d_state_chunk.resize(ChunkSteps(s, true) * state);
    a.entered = EnteringSteps(s, a.valid, reverse);
    if (s.batch_major) {
      shared.x_chunk.resize(ChunkSteps(s, true) * s.B * s.I);
      if (need_dx) shared.dx_chunk.resize(ChunkSteps(s, true) * s.B * s.I);
    }
    std::lock_guard<std::mutex> lock(g_call_mutex);
    g_blas = g_blas_tables[blas];
    const std::string error = RunProfiledTeam(
        threads, "backward", s, kind, /*keep=*/true, bf16,
        [&](int rank, int size, Barrier& barrier, PhaseClock& clock) {
          OneBlasThread one;
          BackwardPart(a, barrier, shared, rank, size, clock);
        });
    if (!error.empty()) return ffi::Error::Internal("rnnjax_backward: " + error);
    return ffi::Error::Success();
  });
}

}  // namespace rnnjax

#endif  // RNNJAX_CSRC_BACKWARD_H_
