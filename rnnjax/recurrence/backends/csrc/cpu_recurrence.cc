// The native CPU backend (../_native.py): one direction of an LSTM, GRU or Elman layer as one
// XLA FFI call forward and one backward.
//
// XLA:CPU runs a scan as a while loop of small thunks, and its dots with few columns (the input
// projection, K = I) run far below the machine's matmul rate. Here the time loop runs in C++, the
// matmuls go to MKL or OpenBLAS (blas.h), and the work is split over the cores by hidden units:
// thread k owns units U_k of every gate, so its gate math needs only its own columns of
// h @ W_hh, and one barrier per step hands the new state to the others.
// - forward, per chunk of steps: P_k = X_chunk @ W_ih[:, U_k of each gate] (one matmul over
//   chunk * B rows); per step hw_k = h @ W_hh[:, U_k ...], then the gate math of U_k;
// - backward, per step: the gate math's VJP gives dZ_t[:, U_k ...], then, after the barrier,
//   dh[:, U_k] = dZ_t @ W_hh[U_k, :]^T; per chunk, split by columns or rows over the threads:
//   dW_hh += H_prev^T dZ, dW_ih += X^T dZ, dX = dZ W_ih^T (cuDNN's plan).
// Chunks keep the scratch small and warm: no [T, B, G*H] temporary beyond the activations that
// training keeps anyway.
//
// Layout: row-major. x [T, B, I], or [B, T, I] with batch_major (so are out, d_out and dx: a
// batch-first layer needs no transposes around the calls; the kernels gather a chunk's rows of x
// into time-major order for its matmuls); the kept activations and states are time-major;
// w_ih [I, GH] and w_hh [P, GH] (JAX's x @ W layout; P = H but for a projected LSTM);
// bias [GH] added to the projection (the cell's folded biases); b_hn [H] (reset-after GRU only:
// inside r * (h W_hn + b_hn)); valid [T, B] uint8 (a padded step keeps the state and outputs
// zeros). A reset-before GRU multiplies r * h by W_hn: a second product per step, after a second
// barrier (every rank reads all of r * h), and a second one in the backward step for d(r * h).
// Gates in PyTorch's order. Steps run t = 0..T-1, or T-1..0 with reverse.
// A projected LSTM (LSTMP, w_hr [H, P]) carries h = (o * tanh(c)) W_hr of P features as its
// state and output: a second product per step after a second barrier, and its transpose first
// in the backward step; dW_hr per chunk from o * tanh(c), recomputed from the kept gates.

#include <Python.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "blas.h"
#include "gate_math.h"
#include "team.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace rnnjax {
namespace {

// kGru resets after the recurrent matmul (PyTorch's GRU), kGruBefore before it (Cho et al.).
enum Kind : int32_t { kLstm = 0, kGru = 1, kTanh = 2, kRelu = 3, kGruBefore = 4 };

int64_t Gates(int32_t kind) {
  return kind == kLstm ? 4 : (kind == kGru || kind == kGruBefore ? 3 : 1);
}
// Activations the backward pass reads per hidden unit. An Elman layer's one activation is its
// output, so its forward pass keeps none of its own (KeptActsPerUnit) and the backward pass
// reads the outputs in their place.
int64_t ActsPerUnit(int32_t kind) {
  return kind == kLstm || kind == kGru ? 4 : (kind == kGruBefore ? 3 : 1);
}
int64_t KeptActsPerUnit(int32_t kind) {
  return kind == kTanh || kind == kRelu ? 0 : ActsPerUnit(kind);
}

Range Intersect(Range a, Range b) {
  const int64_t begin = std::max(a.begin, b.begin);
  return Range{begin, std::max(begin, std::min(a.end, b.end))};
}

// One call at a time: each uses every core, and two teams spinning on the same cores would
// stall each other (XLA may run a bidirectional layer's two directions concurrently).
std::mutex g_call_mutex;

struct Shape {
  int64_t T, B, I, H, G, A;
  bool batch_major;
  int64_t P;  // the state's width: H, or a projected LSTM's proj_size
  bool projected() const { return P != H; }
  int64_t GH() const { return G * H; }
  // The row of step t of example b in x, out, d_out and dx.
  int64_t IoRow(int64_t t, int64_t b) const { return batch_major ? b * T + t : t * B + b; }
};

// Rows `mine` (of m * B, time-major: step t_lo + r / B, example r % B) of x, copied from a
// batch-major x into `chunk` at the same positions.
void GatherRows(const float* x, const Shape& s, int64_t t_lo, Range mine, float* chunk) {
  for (int64_t r = mine.begin; r < mine.end; ++r)
    std::copy_n(x + s.IoRow(t_lo + r / s.B, r % s.B) * s.I, s.I, chunk + r * s.I);
}

// Steps per chunk: enough rows (chunk * B) for the chunk's matmuls to run near full rate.
int64_t ChunkSteps(const Shape& s) { return std::max<int64_t>(1, std::min(s.T, 512 / s.B)); }

// The time index of processing step `step` (0 = first processed).
int64_t TimeAt(int64_t step, const Shape& s, bool reverse) {
  return reverse ? s.T - 1 - step : step;
}

// Columns U of each gate of w [rows, G*H], side by side: [rows, G*|U|], copied into `copy`;
// w itself where U is every unit (one thread: a short call, streaming, copies nothing).
const float* GateColumns(const float* w, int64_t rows, const Shape& s, Range u,
                         std::vector<float>* copy) {
  if (u.size() == s.H) return w;
  copy->resize(rows * s.G * u.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < s.G; ++g)
      std::copy_n(w + r * s.GH() + g * s.H + u.begin, u.size(),
                  copy->data() + (r * s.G + g) * u.size());
  return copy->data();
}

// Whether packing W_hh for MKL pays: it costs about one product, and saves a quarter of each.
bool PackPays(const Shape& s) { return s.T >= 8; }

// Every buffer is checked before it is read or written: a call with inconsistent shapes (for
// example parameters of another hidden size) returns an error instead of reading or writing
// past the end of a buffer. Ranks first, then the sizes every element count follows from.
ffi::Error Mismatch(const char* name, size_t got, int64_t want) {
  return ffi::Error::InvalidArgument(std::string("rnnjax: ") + name + " has " +
                                     std::to_string(got) + " elements, expected " +
                                     std::to_string(want));
}

#define RNNJAX_EXPECT(name, count, want)                                     \
  if (static_cast<int64_t>(count) != static_cast<int64_t>(want)) {           \
    return Mismatch(name, count, want);                                      \
  }

std::string Dims(ffi::Span<const int64_t> dims) {
  std::string text = "[";
  for (size_t i = 0; i < dims.size(); ++i) text += (i ? ", " : "") + std::to_string(dims[i]);
  return text + "]";
}

ffi::Error WrongDims(const char* name, ffi::Span<const int64_t> dims, const std::string& want) {
  return ffi::Error::InvalidArgument(std::string("rnnjax: ") + name + " is " + Dims(dims) +
                                     ", expected " + want);
}

ffi::Error ShapeOf(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w_ih,
                   ffi::Buffer<ffi::F32> w_hh, ffi::Buffer<ffi::F32> w_hr,
                   ffi::Buffer<ffi::U8> valid, int32_t kind, bool batch_major, int32_t threads,
                   Shape* s) {
  if (g_blas.sgemm == nullptr) return ffi::Error::Internal("rnnjax: no BLAS set");
  if (kind < kLstm || kind > kGruBefore)
    return ffi::Error::InvalidArgument("rnnjax: unknown kind");
  if (threads < 1 || threads > 1024)  // Python caps it at the CPUs allowed
    return ffi::Error::InvalidArgument("rnnjax: threads must be in [1, 1024]");
  auto xd = x.dimensions(), id = w_ih.dimensions(), hd = w_hh.dimensions();
  auto rd = w_hr.dimensions(), vd = valid.dimensions();
  if (xd.size() != 3) return WrongDims("x", xd, batch_major ? "[B, T, I]" : "[T, B, I]");
  if (hd.size() != 2) return WrongDims("w_hh", hd, "[P, G*H]");
  if (rd.size() != 2) return WrongDims("w_hr", rd, "[H, P], or [0, 0] without projection");
  const bool projected = w_hr.element_count() > 0;
  if (projected && kind != kLstm)
    return ffi::Error::InvalidArgument("rnnjax: w_hr (a projection) is for an LSTM only");
  const int64_t steps = batch_major ? xd[1] : xd[0], batch = batch_major ? xd[0] : xd[1];
  const int64_t hidden = projected ? rd[0] : hd[0];
  *s = Shape{steps, batch, xd[2], hidden, Gates(kind), ActsPerUnit(kind), batch_major, hd[0]};
  auto pair = [](int64_t a, int64_t b) {
    return "[" + std::to_string(a) + ", " + std::to_string(b) + "]";
  };
  if (hd[1] != s->GH()) return WrongDims("w_hh", hd, "[P, G*H] = " + pair(s->P, s->GH()));
  if (projected && (rd[1] != s->P || s->P >= s->H))
    return WrongDims("w_hr", rd, "[H, P] with P = w_hh's rows below H");
  if (id.size() != 2 || id[0] != s->I || id[1] != s->GH())
    return WrongDims("w_ih", id, "[I, G*H] = " + pair(s->I, s->GH()));
  if (vd.size() != 2 || vd[0] != s->T || vd[1] != s->B)
    return WrongDims("valid", vd, "[T, B] = " + pair(s->T, s->B));
  return ffi::Error::Success();
}

// Runs a handler, turning any exception (std::bad_alloc of a large buffer) into an FFI error:
// an exception must not cross the C boundary of the handler, where it would end the process.
template <typename Fn>
ffi::Error Guarded(Fn&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("rnnjax: ") + e.what());
  } catch (...) {
    return ffi::Error::Internal("rnnjax: unknown exception");
  }
}

// ---- forward ----------------------------------------------------------------------------------

struct ForwardArgs {
  Shape s;
  int32_t kind;
  bool reverse, keep;
  const float *x, *w_ih, *bias, *w_hh, *w_hr, *b_hn, *h0, *c0;
  const uint8_t* valid;
  float *out, *h_last, *c_last, *acts, *prev_c;
};

// Rank's part of the forward pass: units U of every gate, all rows, all steps. rh [B, H]:
// reset-before's r * h, which every rank reads whole (a second barrier per step); likewise a
// projected LSTM's o * tanh(c) in rh, whose projection's columns V the rank computes.
void ForwardPart(const ForwardArgs& a, Barrier& barrier, std::vector<float>* h_buffers,
                 std::vector<float>* c_buffers, float* x_chunk, float* rh, int rank,
                 int threads) {
  const Shape& s = a.s;
  const int64_t B = s.B, H = s.H, P = s.P, G = s.G, A = s.A, C = ChunkSteps(s);
  const Range u = Share(H, rank, threads), v = Share(P, rank, threads);
  const int64_t n = u.size(), width = G * n;  // this rank's columns of the projection and hw
  const bool lstm = a.kind == kLstm, before = a.kind == kGruBefore, projected = s.projected();
  std::vector<float> w_ih_copy, w_hh_copy;
  const float* w_ih_u = GateColumns(a.w_ih, s.I, s, u, &w_ih_copy);
  const float* w_hh_u = GateColumns(a.w_hh, P, s, u, &w_hh_copy);
  // Reset-before: h multiplies the r and z blocks only, and r * h the n block.
  const RightOperand w_step(B, before ? 2 * n : width, P, w_hh_u, width, false, PackPays(s));
  const RightOperand w_proj(B, projected ? v.size() : 0, H, a.w_hr + v.begin, P, false,
                            PackPays(s));
  std::vector<float> unused_out(projected ? n : 0);  // a projected LSTM's out is h_P's
  const RightOperand w_reset(B, before ? n : 0, H, w_hh_u + 2 * n, width, false, PackPays(s));
  const bool acts_kept = a.keep && KeptActsPerUnit(a.kind) > 0;
  std::vector<float> proj(C * B * width), hw(B * width);
  std::vector<float> scratch_acts(acts_kept ? 0 : B * A * H);  // per example: reset-before
  float *h = h_buffers[0].data(), *h_new = h_buffers[1].data();
  float *c = c_buffers[0].data(), *c_new = c_buffers[1].data();
  for (int64_t k = 0; k < s.T; k += C) {  // processing steps k .. k + m - 1
    const int64_t m = std::min(C, s.T - k);
    const int64_t t_lo = std::min(TimeAt(k, s, a.reverse), TimeAt(k + m - 1, s, a.reverse));
    const float* x = a.x + t_lo * B * s.I;
    if (s.batch_major) {  // every rank gathers its share of the chunk's rows, then reads all
      GatherRows(a.x, s, t_lo, Share(m * B, rank, threads, 1), x_chunk);
      barrier.Wait();
      x = x_chunk;
    }
    Gemm(false, false, m * B, width, s.I, x, s.I, w_ih_u, width, 0.f, proj.data(), width);
    for (int64_t step = k; step < k + m; ++step) {
      const int64_t t = TimeAt(step, s, a.reverse);
      w_step.Multiply(h, P, 0.f, hw.data(), width);
      for (int64_t b = 0; b < B; ++b) {
        const int64_t row = t * B + b, at = b * H + u.begin;
        if (a.keep && lstm) std::copy_n(c + at, n, a.prev_c + row * H + u.begin);
        float* out = projected ? nullptr : a.out + s.IoRow(t, b) * H + u.begin;
        if (!a.valid[row]) {
          if (!projected) std::copy_n(h + at, n, h_new + at);
          if (!projected) std::fill_n(out, n, 0.f);
          if (lstm) std::copy_n(c + at, n, c_new + at);
          if (before) std::fill_n(rh + at, n, 0.f);
          continue;
        }
        const float* p = proj.data() + ((t - t_lo) * B + b) * width;
        const float* hwb = hw.data() + b * width;
        const float* bias = a.bias + u.begin;
        float* acts = (acts_kept ? a.acts + row * A * H : &scratch_acts[b * A * H]) + u.begin;
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
        barrier.Wait();  // r * h is complete: every rank's (r * h) W_hn reads all of it
        w_reset.Multiply(rh, H, 0.f, hw.data() + 2 * n, width);
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
        barrier.Wait();  // o * tanh(c) is complete: every rank's columns V of h_P read all of it
        w_proj.Multiply(rh, H, 0.f, h_new + v.begin, P);
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
      std::swap(h, h_new);
      std::swap(c, c_new);
      barrier.Wait();  // the new state is complete: every rank's next product reads all of it
    }
  }
  const Range state = projected ? v : u;
  for (int64_t b = 0; b < B; ++b) {
    std::copy_n(h + b * P + state.begin, state.size(), a.h_last + b * P + state.begin);
    if (lstm) std::copy_n(c + b * H + u.begin, n, a.c_last + b * H + u.begin);
  }
}

// Forward. keep (training) fills acts [T, B, A*H] and (LSTM) prev_c [T, B, H], the cell state
// states entering each step; otherwise those outputs have zero size.
ffi::Error Forward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w_ih,
                   ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::F32> w_hh,
                   ffi::Buffer<ffi::F32> w_hr, ffi::Buffer<ffi::F32> b_hn, ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> c0,
                   ffi::Buffer<ffi::U8> valid, ffi::ResultBuffer<ffi::F32> out,
                   ffi::ResultBuffer<ffi::F32> h_last, ffi::ResultBuffer<ffi::F32> c_last,
                   ffi::ResultBuffer<ffi::F32> acts, ffi::ResultBuffer<ffi::F32> prev_c,
                   int32_t kind, bool reverse, bool keep,
                   bool batch_major, int32_t threads) {
  return Guarded([&]() -> ffi::Error {
    Shape s;
    if (auto e = ShapeOf(x, w_ih, w_hh, w_hr, valid, kind, batch_major, threads, &s);
        e.failure())
      return e;
    const bool lstm = kind == kLstm;
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
    std::vector<float> x_chunk(s.batch_major ? ChunkSteps(s) * s.B * s.I : 0);
    std::vector<float> rh(kind == kGruBefore || s.projected() ? cells : 0);
    std::lock_guard<std::mutex> lock(g_call_mutex);
    const std::string error = RunTeam(threads, [&](int rank, int size, Barrier& barrier) {
      OneBlasThread one;
      ForwardPart(a, barrier, h_buffers, c_buffers, x_chunk.data(), rh.data(), rank, size);
    });
    if (!error.empty()) return ffi::Error::Internal("rnnjax_forward: " + error);
    return ffi::Error::Success();
  });
}

// ---- backward ---------------------------------------------------------------------------------

struct BackwardArgs {
  Shape s;
  int32_t kind;
  bool reverse;
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

std::vector<int64_t> EnteringSteps(const Shape& s, const uint8_t* valid, bool reverse) {
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
  std::vector<float> d_hw, d_proj;  // the chunk's cotangents [C * B, GH]; d_proj: GRU only
  std::vector<float> x_chunk, dx_chunk;  // batch_major: the chunk's x and dx rows, time-major
  std::vector<float> h_chunk;            // the states entering the chunk's steps [C * B, P]
  std::vector<float> d_rh, rh_chunk;  // reset-before: d(r * h) of a step [B, H]; r * h [C * B, H]
  // A projected LSTM: the cotangents of h_P [C * B, P] and of o * tanh(c) of a step [B, H] (in
  // d_rh), and o * tanh(c) of the chunk's steps [C * B, H] (in rh_chunk) for dW_hr.
  std::vector<float> d_state_chunk;
};

// o * tanh(c) of every unit of a projected LSTM's step, from its kept gates and entering c.
void UnprojectedOutput(const float* acts, const float* prev_c, int64_t H, float* row) {
  for (int64_t j = 0; j < H; ++j) {
    const float i = acts[j], f = acts[H + j], g = acts[2 * H + j], o = acts[3 * H + j];
    row[j] = o * Tanh(f * prev_c[j] + i * g);
  }
}

// Rank's part of the backward pass: per step the gate-math VJP of units U and dh[:, U]; per
// chunk its share of the weight-gradient columns and of the input-gradient rows.
void BackwardPart(const BackwardArgs& a, Barrier& barrier, BackwardShared& shared, int rank,
                  int threads) {
  const Shape& s = a.s;
  const int64_t B = s.B, H = s.H, P = s.P, I = s.I, GH = s.GH(), A = s.A, C = ChunkSteps(s);
  const Range u = Share(H, rank, threads), v = Share(P, rank, threads);
  const int64_t n = u.size();
  const bool lstm = a.kind == kLstm, gru = a.kind == kGru, before = a.kind == kGruBefore;
  const bool projected = s.projected();
  // The rank's columns of the state h: the units U, or a projected LSTM's columns V of h_P.
  const Range mine_h = projected ? v : u;
  // dh[:, U] = dZ_t @ W_hh[U, :]^T: the rows U of W_hh, transposed (reset-before: of the r and
  // z blocks; its n block gives d(r * h)[:, U] = dn_t @ W_hn[U, :]^T first).
  const RightOperand w_back(B, mine_h.size(), before ? 2 * H : GH, a.w_hh + mine_h.begin * GH,
                            GH, true, PackPays(s));
  // A projected LSTM: d(o * tanh(c))[:, U] = dh_P_t @ W_hr[U, :]^T.
  const RightOperand w_proj_back(B, projected ? n : 0, P, a.w_hr + u.begin * P, P, true,
                                 PackPays(s));
  const std::vector<float> no_d_out(projected ? n : 0, 0.f);  // folded into dh_P_t
  const RightOperand w_reset_back(B, before ? n : 0, H, a.w_hh + u.begin * GH + 2 * H, GH, true,
                                  PackPays(s));
  float *dh = shared.dh[0].data(), *dh_new = shared.dh[1].data();
  float *dc = shared.dc[0].data(), *dc_new = shared.dc[1].data();
  float* d_hw = shared.d_hw.data();
  float* d_proj = gru ? shared.d_proj.data() : d_hw;  // equal unless the cell is a GRU
  const Range cols = Share(GH, rank, threads), no_cols{0, 0};
  const int64_t chunks = (s.T + C - 1) / C;
  for (int64_t ci = chunks - 1; ci >= 0; --ci) {  // the forward's chunks, last first
    const int64_t k = ci * C, m = std::min(C, s.T - k);
    const int64_t t_lo = std::min(TimeAt(k, s, a.reverse), TimeAt(k + m - 1, s, a.reverse));
    for (int64_t step = k + m - 1; step >= k; --step) {
      const int64_t t = TimeAt(step, s, a.reverse);
      float* dhw_t = d_hw + (t - t_lo) * B * GH;
      float* dp_t = d_proj + (t - t_lo) * B * GH;
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
        barrier.Wait();  // dh_P_t is complete: every rank's product reads all of it
        w_proj_back.Multiply(d_state_t, P, 0.f, shared.d_rh.data() + u.begin, H);
      }
      for (int64_t b = 0; b < B; ++b) {
        const int64_t row = t * B + b, at = b * H + u.begin;
        float* dhw_b = dhw_t + b * GH + u.begin;
        if (!a.valid[row]) {  // a padded step passes the state cotangents through
          for (int64_t g = 0; g < s.G; ++g) {
            std::fill_n(dhw_b + g * H, n, 0.f);
            if (gru) std::fill_n(dp_t + b * GH + u.begin + g * H, n, 0.f);
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
                     dp_t + b * GH + u.begin, H, dh_new + at);
        } else if (before) {
          GruBeforeRowGradNew(n, acts, H, a.StateEntering(t, b) + u.begin, dh + at, d_out, dhw_b,
                              H, dh_new + at);
        } else {
          ElmanRowGrad(n, acts, dh + at, d_out, a.kind == kRelu, dhw_b);
          std::fill_n(dh_new + at, n, 0.f);
        }
      }
      barrier.Wait();  // dZ_t is complete: every rank's product reads all of its columns
      if (before) {
        float* d_rh = shared.d_rh.data();
        w_reset_back.Multiply(dhw_t + 2 * H, GH, 0.f, d_rh + u.begin, H);
        for (int64_t b = 0; b < B; ++b) {
          const int64_t row = t * B + b, at = b * H + u.begin;
          if (!a.valid[row]) continue;
          GruBeforeRowGradGates(n, a.acts + row * A * H + u.begin, a.StateEntering(t, b) + u.begin,
                                d_rh + at, dhw_t + b * GH + u.begin, dh_new + at);
        }
        barrier.Wait();  // the r block of dZ_t is complete
      }
      w_back.Multiply(dhw_t, GH, 1.f, dh_new + mine_h.begin, P);
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
    barrier.Wait();
    // dW_hh: the entering states' columns, and reset-before's n block from r * h.
    const Range h_cols = before ? Intersect(cols, Range{0, 2 * H}) : cols;
    const Range rh_cols = before ? Intersect(cols, Range{2 * H, GH}) : no_cols;
    Gemm(true, false, P, h_cols.size(), rows, shared.h_chunk.data(), P, d_hw + h_cols.begin, GH,
         1.f, a.dw_hh + h_cols.begin, GH);
    if (projected) {  // dW_hr += (o * tanh(c))^T dh_P, split by columns of P
      const Range p_cols = Share(P, rank, threads, 1);
      Gemm(true, false, H, p_cols.size(), rows, shared.rh_chunk.data(), H,
           shared.d_state_chunk.data() + p_cols.begin, P, 1.f, a.dw_hr + p_cols.begin, P);
    }
    Gemm(true, false, H, rh_cols.size(), rows, shared.rh_chunk.data(), H, d_hw + rh_cols.begin,
         GH, 1.f, a.dw_hh + rh_cols.begin, GH);
    Gemm(true, false, I, cols.size(), rows, x, I, d_proj + cols.begin, GH, 1.f,
         a.dw_ih + cols.begin, GH);
    if (a.dx != nullptr) {
      float* dx = s.batch_major ? shared.dx_chunk.data() : a.dx + t_lo * B * I;
      Gemm(false, true, mine.size(), I, GH, d_proj + mine.begin * GH, GH, a.w_ih, GH, 0.f,
           dx + mine.begin * I, I);
      for (int64_t r = mine.begin; s.batch_major && r < mine.end; ++r)
        std::copy_n(dx + r * I, I, a.dx + s.IoRow(t_lo + r / B, r % B) * I);
    }
    AddRows(rows, cols.size(), d_proj + cols.begin, GH, a.db_proj + cols.begin);
    const Range hw_cols = gru ? cols : no_cols;
    AddRows(rows, hw_cols.size(), d_hw + hw_cols.begin, GH, a.db_hw + hw_cols.begin);
    barrier.Wait();  // the chunk buffers are read: the next chunk may overwrite them
  }
  for (int64_t b = 0; b < B; ++b) {
    std::copy_n(dh + b * P + mine_h.begin, mine_h.size(), a.dh0 + b * P + mine_h.begin);
    if (lstm) std::copy_n(dc + b * H + u.begin, n, a.dc0 + b * H + u.begin);
  }
}

// Backward: dx [T, B, I] (zero-size unless need_dx: a first layer's inputs need none),
// dw_ih [I, GH], dw_hh [P, GH], dw_hr [H, P] (zero-size without projection), db_proj [GH] (the projection bias's cotangent), db_hw [GH] (GRU:
// that of h W_hh + b_hn, whose last H entries are b_hn's; zeros otherwise), dh0, dc0. An Elman
// layer passes its outputs as acts.
ffi::Error Backward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w_ih,
                    ffi::Buffer<ffi::F32> w_hh, ffi::Buffer<ffi::F32> w_hr,
                    ffi::Buffer<ffi::F32> acts, ffi::Buffer<ffi::F32> out,
                    ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> prev_c,
                    ffi::Buffer<ffi::U8> valid,
                    ffi::Buffer<ffi::F32> d_out, ffi::Buffer<ffi::F32> dh_last,
                    ffi::Buffer<ffi::F32> dc_last, ffi::ResultBuffer<ffi::F32> dx,
                    ffi::ResultBuffer<ffi::F32> dw_ih, ffi::ResultBuffer<ffi::F32> dw_hh,
                    ffi::ResultBuffer<ffi::F32> dw_hr, ffi::ResultBuffer<ffi::F32> db_proj, ffi::ResultBuffer<ffi::F32> db_hw,
                    ffi::ResultBuffer<ffi::F32> dh0, ffi::ResultBuffer<ffi::F32> dc0,
                    int32_t kind, bool reverse, bool need_dx, bool batch_major,
                    int32_t threads) {
  return Guarded([&]() -> ffi::Error {
    Shape s;
    if (auto e = ShapeOf(x, w_ih, w_hh, w_hr, valid, kind, batch_major, threads, &s);
        e.failure())
      return e;
    const bool lstm = kind == kLstm, gru = kind == kGru;
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
    const int64_t chunk = ChunkSteps(s) * s.B * s.GH();
    BackwardShared shared;
    shared.dh[0].assign(a.dh_last, a.dh_last + state);
    shared.dh[1].resize(state);
    if (lstm) {
      shared.dc[0].assign(a.dc_last, a.dc_last + cells);
      shared.dc[1].resize(cells);
    }
    shared.d_hw.resize(chunk);
    if (gru) shared.d_proj.resize(chunk);
    shared.h_chunk.resize(ChunkSteps(s) * state);
    if (kind == kGruBefore || s.projected()) {
      shared.d_rh.resize(cells);
      shared.rh_chunk.resize(ChunkSteps(s) * cells);
    }
    if (s.projected()) shared.d_state_chunk.resize(ChunkSteps(s) * state);
    a.entered = EnteringSteps(s, a.valid, reverse);
    if (s.batch_major) {
      shared.x_chunk.resize(ChunkSteps(s) * s.B * s.I);
      if (need_dx) shared.dx_chunk.resize(ChunkSteps(s) * s.B * s.I);
    }
    std::lock_guard<std::mutex> lock(g_call_mutex);
    const std::string error = RunTeam(threads, [&](int rank, int size, Barrier& barrier) {
      OneBlasThread one;
      BackwardPart(a, barrier, shared, rank, size);
    });
    if (!error.empty()) return ffi::Error::Internal("rnnjax_backward: " + error);
    return ffi::Error::Success();
  });
}

using F32 = ffi::Buffer<ffi::F32>;
using U8 = ffi::Buffer<ffi::U8>;

}  // namespace
}  // namespace rnnjax

XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnjaxForward, rnnjax::Forward,
                              xla::ffi::Ffi::Bind()
                                  .Arg<rnnjax::F32>()  // x
                                  .Arg<rnnjax::F32>()  // w_ih
                                  .Arg<rnnjax::F32>()  // bias
                                  .Arg<rnnjax::F32>()  // w_hh
                                  .Arg<rnnjax::F32>()  // w_hr
                                  .Arg<rnnjax::F32>()  // b_hn
                                  .Arg<rnnjax::F32>()  // h0
                                  .Arg<rnnjax::F32>()  // c0
                                  .Arg<rnnjax::U8>()   // valid
                                  .Ret<rnnjax::F32>()  // out
                                  .Ret<rnnjax::F32>()  // h_last
                                  .Ret<rnnjax::F32>()  // c_last
                                  .Ret<rnnjax::F32>()  // acts
                                  .Ret<rnnjax::F32>()  // prev_c
                                  .Attr<int32_t>("kind")
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("keep")
                                  .Attr<bool>("batch_major")
                                  .Attr<int32_t>("threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(RnnjaxBackward, rnnjax::Backward,
                              xla::ffi::Ffi::Bind()
                                  .Arg<rnnjax::F32>()  // x
                                  .Arg<rnnjax::F32>()  // w_ih
                                  .Arg<rnnjax::F32>()  // w_hh
                                  .Arg<rnnjax::F32>()  // w_hr
                                  .Arg<rnnjax::F32>()  // acts
                                  .Arg<rnnjax::F32>()  // out
                                  .Arg<rnnjax::F32>()  // h0
                                  .Arg<rnnjax::F32>()  // prev_c
                                  .Arg<rnnjax::U8>()   // valid
                                  .Arg<rnnjax::F32>()  // d_out
                                  .Arg<rnnjax::F32>()  // dh_last
                                  .Arg<rnnjax::F32>()  // dc_last
                                  .Ret<rnnjax::F32>()  // dx
                                  .Ret<rnnjax::F32>()  // dw_ih
                                  .Ret<rnnjax::F32>()  // dw_hh
                                  .Ret<rnnjax::F32>()  // dw_hr
                                  .Ret<rnnjax::F32>()  // db_proj
                                  .Ret<rnnjax::F32>()  // db_hw
                                  .Ret<rnnjax::F32>()  // dh0
                                  .Ret<rnnjax::F32>()  // dc0
                                  .Attr<int32_t>("kind")
                                  .Attr<bool>("reverse")
                                  .Attr<bool>("need_dx")
                                  .Attr<bool>("batch_major")
                                  .Attr<int32_t>("threads"));

// ---- Python module: the handlers as capsules, and the BLAS addresses ---------------------------

namespace {

template <typename Fn>
bool AddressOf(PyObject* object, Fn* out) {
  if (object == Py_None) {
    *out = nullptr;
    return true;
  }
  void* ptr = PyLong_AsVoidPtr(object);
  if (ptr == nullptr && PyErr_Occurred()) return false;
  *out = reinterpret_cast<Fn>(ptr);
  return true;
}

PyObject* SetBlas(PyObject*, PyObject* args) {
  PyObject *sgemm, *get_size, *pack, *compute, *threads_local;
  if (!PyArg_ParseTuple(args, "OOOOO", &sgemm, &get_size, &pack, &compute, &threads_local)) {
    return nullptr;
  }
  rnnjax::Blas blas;
  if (!AddressOf(sgemm, &blas.sgemm) || !AddressOf(get_size, &blas.pack_get_size) ||
      !AddressOf(pack, &blas.pack) || !AddressOf(compute, &blas.compute) ||
      !AddressOf(threads_local, &blas.set_threads_local)) {
    return nullptr;
  }
  if (blas.sgemm == nullptr) {
    PyErr_SetString(PyExc_ValueError, "set_blas: the sgemm address is required");
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(rnnjax::g_call_mutex);
  rnnjax::g_blas = blas;
  Py_RETURN_NONE;
}

PyObject* Handlers(PyObject*, PyObject*) {
  return Py_BuildValue("{s:N,s:N}", "forward",
                       PyCapsule_New(reinterpret_cast<void*>(RnnjaxForward), nullptr, nullptr),
                       "backward",
                       PyCapsule_New(reinterpret_cast<void*>(RnnjaxBackward), nullptr, nullptr));
}

PyMethodDef kMethods[] = {
    {"set_blas", SetBlas, METH_VARARGS,
     "set_blas(sgemm, pack_get_size, pack, compute, set_threads_local): addresses of cblas_sgemm "
     "and, or None, of MKL's cblas_sgemm_pack_get_size, cblas_sgemm_pack, cblas_sgemm_compute "
     "and MKL_Set_Num_Threads_Local."},
    {"handlers", Handlers, METH_NOARGS, "The XLA FFI handlers, by name, as PyCapsules."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_cpu_recurrence", nullptr, -1, kMethods};

}  // namespace

PyMODINIT_FUNC PyInit__cpu_recurrence() { return PyModule_Create(&kModule); }
