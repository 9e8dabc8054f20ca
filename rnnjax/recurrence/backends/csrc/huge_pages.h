// Transparent huge pages for the outputs of inference. XLA allocates fresh outputs for each call
// (glibc maps a large one anew), and writing them first faults in one 4 KiB page at a time: on a
// 2-core AMD EPYC VM (2026-12-03) the 32 MB output of a GRU layer at 64x256x128x512 took 25-35
// ms of faults, all on the thread that reached each page first, which the other thread then
// waited for at the barrier; with 2 MiB pages it is 16 faults. Inference ran 4-8% faster alone,
// 0-3% interleaved with torch and flax. Not for training (the kept activations, dx): interleaved
// with torch and flax, whose allocations fragment memory so that each huge page may first need
// the kernel to compact, the LSTM training step at 64x256x128x512 took 1298 ms with huge pages
// against 1150 without (and 775-816 against 561-587 on 2026-12-02's Xeon). Where THP is
// "madvise", as on most distributions, only advised ranges get huge pages.

#ifndef RNNJAX_CSRC_HUGE_PAGES_H_
#define RNNJAX_CSRC_HUGE_PAGES_H_

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace rnnjax {

// Advises huge pages for the whole 2 MiB pages inside [data, data + bytes). Advice only: a range
// already faulted in, a kernel without THP or another OS changes nothing, and the result is
// ignored (the buffer stays usable either way). Small buffers are skipped: they live in the
// allocator's heap, whose VMA the advice would split.
inline void AdviseHugePages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t{2} << 20;
  if (data == nullptr || bytes < 4 * kHuge) return;
  const uintptr_t at = reinterpret_cast<uintptr_t>(data);
  const uintptr_t begin = (at + kHuge - 1) & ~(kHuge - 1), end = (at + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace rnnjax

#endif  // RNNJAX_CSRC_HUGE_PAGES_H_
