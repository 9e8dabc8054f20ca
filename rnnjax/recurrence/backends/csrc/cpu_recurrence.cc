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
//
// kernel_shape.h reads and checks the buffers' shapes, forward.h and backward.h are the two
// kernels, profile.h times their phases per thread (RNNJAX_NATIVE_PROFILE); this file registers
// them as XLA FFI handlers and holds the Python module.

#include <Python.h>

#include <cstdint>
#include <mutex>

#include "backward.h"
#include "bf16_kernel.h"
#include "blas.h"
#include "forward.h"
#include "kernel_shape.h"
#include "xla/ffi/api/ffi.h"

namespace rnnjax {
using F32 = ffi::Buffer<ffi::F32>;
using U8 = ffi::Buffer<ffi::U8>;
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
                                  .Attr<int32_t>("threads")
                                  .Attr<int32_t>("bf16")
                                  .Attr<int32_t>("blas"));

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
                                  .Attr<int32_t>("threads")
                                  .Attr<int32_t>("bf16")
                                  .Attr<int32_t>("blas"));

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
  int table;
  PyObject *sgemm, *get_size, *pack, *compute, *threads_local;
  PyObject *bf16_gemm = Py_None, *bf16_get_size = Py_None, *bf16_pack = Py_None,
           *bf16_compute = Py_None;
  if (!PyArg_ParseTuple(args, "iOOOOO|OOOO", &table, &sgemm, &get_size, &pack, &compute,
                        &threads_local, &bf16_gemm, &bf16_get_size, &bf16_pack, &bf16_compute)) {
    return nullptr;
  }
  if (table < 0 || table > 1) {
    PyErr_SetString(PyExc_ValueError, "set_blas: table must be 0 (small problems) or 1 (large)");
    return nullptr;
  }
  rnnjax::Blas blas;
  if (!AddressOf(sgemm, &blas.sgemm) || !AddressOf(get_size, &blas.pack_get_size) ||
      !AddressOf(pack, &blas.pack) || !AddressOf(compute, &blas.compute) ||
      !AddressOf(threads_local, &blas.set_threads_local) ||
      !AddressOf(bf16_gemm, &blas.bf16_gemm) ||
      !AddressOf(bf16_get_size, &blas.bf16_pack_get_size) ||
      !AddressOf(bf16_pack, &blas.bf16_pack) || !AddressOf(bf16_compute, &blas.bf16_compute)) {
    return nullptr;
  }
  if (blas.sgemm == nullptr) {
    PyErr_SetString(PyExc_ValueError, "set_blas: the sgemm address is required");
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(rnnjax::g_call_mutex);
  rnnjax::g_blas_tables[table] = blas;
  Py_RETURN_NONE;
}

PyObject* Handlers(PyObject*, PyObject*) {
  return Py_BuildValue("{s:N,s:N}", "forward",
                       PyCapsule_New(reinterpret_cast<void*>(RnnjaxForward), nullptr, nullptr),
                       "backward",
                       PyCapsule_New(reinterpret_cast<void*>(RnnjaxBackward), nullptr, nullptr));
}

PyObject* Bf16KernelRuns(PyObject*, PyObject*) {
  return PyBool_FromLong(rnnjax::Bf16KernelRuns());
}

PyMethodDef kMethods[] = {
    {"set_blas", SetBlas, METH_VARARGS,
     "set_blas(table, sgemm, pack_get_size, pack, compute, set_threads_local[, bf16_gemm, "
     "bf16_pack_get_size, bf16_pack, bf16_compute]): table 0 (small problems) or 1 (large), "
     "then addresses of cblas_sgemm and, or None, of "
     "MKL's cblas_sgemm_pack_get_size, cblas_sgemm_pack, cblas_sgemm_compute, "
     "MKL_Set_Num_Threads_Local and cblas_gemm_bf16bf16f32 with its _pack_get_size, _pack and "
     "_compute."},
    {"bf16_kernel_runs", Bf16KernelRuns, METH_NOARGS,
     "Whether this build has rnnjax's own bfloat16 GEMM and this CPU runs it (AVX512-BF16)."},
    {"handlers", Handlers, METH_NOARGS, "The XLA FFI handlers, by name, as PyCapsules."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_cpu_recurrence", nullptr, -1, kMethods};

}  // namespace

PyMODINIT_FUNC PyInit__cpu_recurrence() { return PyModule_Create(&kModule); }
