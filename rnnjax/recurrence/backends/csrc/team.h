// The threads of one kernel call: the caller and workers started for the call, running the same
// function in SPMD style, each on its own range of hidden units, meeting at a barrier.
//
// The barrier spins briefly and then yields: each step of the recurrence ends at one, and a few
// microseconds of futex wake-up per step would be a large share of a ~100 us step, while pure
// spinning would stall when more threads than cores are runnable.

#ifndef RNNJAX_CSRC_TEAM_H_
#define RNNJAX_CSRC_TEAM_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace rnnjax {

class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}

  void Wait() {
    if (count_ == 1) return;
    const int generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == count_ - 1) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
      return;
    }
    for (int spins = 0; generation_.load(std::memory_order_acquire) == generation; ++spins) {
      if (spins > 4000) std::this_thread::yield();
    }
  }

 private:
  const int count_;
  std::atomic<int> arrived_{0};
  std::atomic<int> generation_{0};
};

// Runs body(rank) on `threads` threads (rank 0 on the caller) and waits for all of them.
inline void RunTeam(int threads, const std::function<void(int)>& body) {
  std::vector<std::thread> workers;
  for (int rank = 1; rank < threads; ++rank) workers.emplace_back(body, rank);
  body(0);
  for (std::thread& worker : workers) worker.join();
}

// Rank's share [begin, end) of n items; boundaries on multiples of `align` where n allows, so
// that each share's vector loops start aligned.
struct Range {
  int64_t begin, end;
  int64_t size() const { return end - begin; }
};

inline Range Share(int64_t n, int rank, int threads, int64_t align = 16) {
  auto cut = [&](int r) {
    int64_t at = n * r / threads;
    if (n >= align * threads) at = std::min(n, (at + align / 2) / align * align);
    return r == threads ? n : at;
  };
  return Range{cut(rank), cut(rank + 1)};
}

}  // namespace rnnjax

#endif  // RNNJAX_CSRC_TEAM_H_
