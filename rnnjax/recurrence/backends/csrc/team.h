// The threads of one kernel call: the caller and workers started for the call, running the same
// function in SPMD style, each on its own range of hidden units, meeting at a barrier.
//
// The barrier spins briefly and then yields: each step of the recurrence ends at one, and a few
// microseconds of futex wake-up per step would be a large share of a ~100 us step, while pure
// spinning would stall when more threads than cores are runnable.
//
// Nothing here may end the process: a worker that cannot start (a container's process limit)
// leaves the work to the threads that did, and an exception in any thread (std::bad_alloc)
// releases the others from the barrier and comes back to the caller as an error message.

#ifndef RNNJAX_CSRC_TEAM_H_
#define RNNJAX_CSRC_TEAM_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <new>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace rnnjax {

// Thrown in the threads still waiting at a barrier after another thread failed.
struct TeamAborted {};

class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}

  // Only before any thread waits.
  void SetCount(int count) { count_ = count; }

  void Wait() {
    if (count_ == 1) return;
    const int generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == count_ - 1) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
      return;
    }
    for (int spins = 0; generation_.load(std::memory_order_acquire) == generation; ++spins) {
      if (aborted_.load(std::memory_order_relaxed)) throw TeamAborted();
      if (spins > 4000) std::this_thread::yield();
    }
  }

  // Releases every thread waiting now or later with TeamAborted: a failed thread will never
  // arrive, so the others must not wait for it.
  void Abort() { aborted_.store(true, std::memory_order_relaxed); }

 private:
  int count_;
  std::atomic<int> arrived_{0};
  std::atomic<int> generation_{0};
  std::atomic<bool> aborted_{false};
};

// Faults injected by the tests (RNNJAX_NATIVE_TEST_FAULT): "thread_start" makes the second
// worker fail to start, as under a process limit; "worker" makes the last worker throw
// std::bad_alloc before its work.
inline bool FaultInjected(const char* fault) {
  const char* value = std::getenv("RNNJAX_NATIVE_TEST_FAULT");
  return value != nullptr && std::strcmp(value, fault) == 0;
}

// Runs body(rank, size, barrier) on up to `threads` threads (rank 0 on the caller), and waits
// for all of them. size is the number of threads that started; the body splits the work over
// them. Returns "" on success, else the message of the first exception thrown by a thread.
inline std::string RunTeam(int threads, const std::function<void(int, int, Barrier&)>& body) {
  Barrier barrier(threads);
  std::mutex mutex;
  std::condition_variable ready;
  bool go = false;
  int size = 1;
  std::string error;
  auto run = [&](int rank) {
    try {
      if (rank > 0 && rank == size - 1 && FaultInjected("worker")) throw std::bad_alloc();
      body(rank, size, barrier);
    } catch (const TeamAborted&) {
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mutex);
      if (error.empty()) error = e.what();
      barrier.Abort();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex);
      if (error.empty()) error = "unknown exception";
      barrier.Abort();
    }
  };
  // Workers wait for the team's size, known once every start has been tried.
  auto worker = [&](int rank) {
    {
      std::unique_lock<std::mutex> lock(mutex);
      ready.wait(lock, [&] { return go; });
    }
    run(rank);
  };
  std::vector<std::thread> workers;
  try {
    workers.reserve(threads - 1);
    for (int rank = 1; rank < threads; ++rank) {
      if (rank == 2 && FaultInjected("thread_start"))
        throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
      workers.emplace_back(worker, rank);
    }
  } catch (...) {  // std::system_error (no thread) or std::bad_alloc: run with those started
  }
  {
    std::lock_guard<std::mutex> lock(mutex);
    size = 1 + static_cast<int>(workers.size());
    barrier.SetCount(size);
    go = true;
  }
  ready.notify_all();
  run(0);
  for (std::thread& w : workers) w.join();
  return error;
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
