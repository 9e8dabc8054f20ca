// What the forward and backward kernels share (cpu_recurrence.cc): the cell kinds, the problem's
// shape read off the buffers and checked, the time order and the chunks of steps, and errors
// instead of exceptions at the FFI boundary.

#ifndef RNNJAX_CSRC_KERNEL_SHAPE_H_
#define RNNJAX_CSRC_KERNEL_SHAPE_H_

#include <algorithm>
#include <cstdint>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "team.h"
#include "xla/ffi/api/ffi.h"

namespace rnnjax {

namespace ffi = xla::ffi;

// kGru resets after the recurrent matmul (PyTorch's GRU), kGruBefore before it (Cho et al.).
enum Kind : int32_t { kLstm = 0, kGru = 1, kTanh = 2, kRelu = 3, kGruBefore = 4 };

inline int64_t Gates(int32_t kind) {
  return kind == kLstm ? 4 : (kind == kGru || kind == kGruBefore ? 3 : 1);
}
// Activations the backward pass reads per hidden unit. An Elman layer's one activation is its
// output, so its forward pass keeps none of its own (KeptActsPerUnit) and the backward pass
// reads the outputs in their place.
inline int64_t ActsPerUnit(int32_t kind) {
  return kind == kLstm || kind == kGru ? 4 : (kind == kGruBefore ? 3 : 1);
}
inline int64_t KeptActsPerUnit(int32_t kind) {
  return kind == kTanh || kind == kRelu ? 0 : ActsPerUnit(kind);
}

inline Range Intersect(Range a, Range b) {
  const int64_t begin = std::max(a.begin, b.begin);
  return Range{begin, std::max(begin, std::min(a.end, b.end))};
}

// One call at a time: each uses every core, and two teams spinning on the same cores would
// stall each other (XLA may run a bidirectional layer's two directions concurrently).
inline std::mutex g_call_mutex;

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
inline void GatherRows(const float* x, const Shape& s, int64_t t_lo, Range mine, float* chunk) {
  for (int64_t r = mine.begin; r < mine.end; ++r)
    std::copy_n(x + s.IoRow(t_lo + r / s.B, r % s.B) * s.I, s.I, chunk + r * s.I);
}

// Steps per chunk: enough rows (chunk * B) for the chunk's matmuls to run near full rate. A
// forward pass that keeps nothing (inference) takes half as many rows, so that its gate math
// finds more of the chunk's input projections still in L2 (on a Zen 4 EPYC the LSTM's gate phase
// at 64x256x128x512 fell from 34-43 ms to 25-29); training's backward wants the large chunks.
inline int64_t ChunkSteps(const Shape& s, bool keep) {
  return std::max<int64_t>(1, std::min(s.T, (keep ? 512 : 256) / s.B));
}

// The time index of processing step `step` (0 = first processed).
inline int64_t TimeAt(int64_t step, const Shape& s, bool reverse) {
  return reverse ? s.T - 1 - step : step;
}

// The leading dimension of a matrix with rows of `columns` floats: one cache line more where
// the rows would lie a multiple of 4 KiB apart. Then the lines of a column block all fall in the
// same few L1 sets, and OpenBLAS's sgemm lost 15-20% on a Zen 4 EPYC (2026-12-03): 77 GFLOP/s
// for [64, 512] @ [512, 1024] against 91 with both operands' rows padded.
inline int64_t PaddedStride(int64_t columns) {
  return columns % 1024 == 0 ? columns + 16 : columns;
}

// Columns U of each gate of w [rows, G*H], side by side: [rows, G*|U|] with leading dimension
// `ld`, copied into `copy`; w itself where that is w's layout (one thread: a short call,
// streaming, copies nothing).
inline const float* GateColumns(const float* w, int64_t rows, const Shape& s, Range u,
                                int64_t ld, std::vector<float>* copy) {
  if (u.size() == s.H && ld == s.GH()) return w;
  copy->resize(rows * ld);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < s.G; ++g)
      std::copy_n(w + r * s.GH() + g * s.H + u.begin, u.size(),
                  copy->data() + r * ld + g * u.size());
  return copy->data();
}

// Whether packing W_hh for MKL pays: it costs about one product, and saves a quarter of each.
inline bool PackPays(const Shape& s) { return s.T >= 8; }

// Every buffer is checked before it is read or written: a call with inconsistent shapes (for
// example parameters of another hidden size) returns an error instead of reading or writing
// past the end of a buffer. Ranks first, then the sizes every element count follows from.
inline ffi::Error Mismatch(const char* name, size_t got, int64_t want) {
  return ffi::Error::InvalidArgument(std::string("rnnjax: ") + name + " has " +
                                     std::to_string(got) + " elements, expected " +
                                     std::to_string(want));
}

#define RNNJAX_EXPECT(name, count, want)                           \
  if (static_cast<int64_t>(count) != static_cast<int64_t>(want)) { \
    return Mismatch(name, count, want);                            \
  }

inline std::string Dims(ffi::Span<const int64_t> dims) {
  std::string text = "[";
  for (size_t i = 0; i < dims.size(); ++i) text += (i ? ", " : "") + std::to_string(dims[i]);
  return text + "]";
}

inline ffi::Error WrongDims(const char* name, ffi::Span<const int64_t> dims,
                            const std::string& want) {
  return ffi::Error::InvalidArgument(std::string("rnnjax: ") + name + " is " + Dims(dims) +
                                     ", expected " + want);
}

inline ffi::Error ShapeOf(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w_ih,
                          ffi::Buffer<ffi::F32> w_hh, ffi::Buffer<ffi::F32> w_hr,
                          ffi::Buffer<ffi::U8> valid, int32_t kind, bool batch_major,
                          int32_t threads, int32_t blas, Shape* s) {
  if (blas < 0 || blas > 1) return ffi::Error::InvalidArgument("rnnjax: blas must be 0 or 1");
  if (g_blas_tables[blas].sgemm == nullptr) return ffi::Error::Internal("rnnjax: no BLAS set");
  if (kind < kLstm || kind > kGruBefore) return ffi::Error::InvalidArgument("rnnjax: unknown kind");
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
inline ffi::Error Guarded(Fn&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("rnnjax: ") + e.what());
  } catch (...) {
    return ffi::Error::Internal("rnnjax: unknown exception");
  }
}

}  // namespace rnnjax

#endif  // RNNJAX_CSRC_KERNEL_SHAPE_H_
