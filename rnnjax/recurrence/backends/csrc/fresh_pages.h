// Huge pages for the large results the kernels write.
//
// XLA:CPU allocates an executable's temporaries (our results among them) as one block per run;
// above glibc's 32 MiB mmap ceiling that block is a fresh mapping every run, so every 4 KiB
// page the kernels write first faults: 23k faults per training step of an Elman layer at
// 64x256x128x256, a quarter of its time. Asking for transparent huge pages on the part of each
// result that covers whole 2 MiB pages turns 512 faults into one. Where THP is "never" (or the
// call fails) nothing changes; the advice dies with the mapping when XLA frees the block.

#ifndef RNNJAX_CSRC_FRESH_PAGES_H_
#define RNNJAX_CSRC_FRESH_PAGES_H_

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace rnnjax {

inline void AdviseHugePages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (bytes < 2 * kHuge) return;  // at most one whole huge page inside: not worth a call
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace rnnjax

#endif  // RNNJAX_CSRC_FRESH_PAGES_H_
