// Where a kernel call's time goes, per thread (RNNJAX_NATIVE_PROFILE=<file>): each rank charges
// the time since its last lap to a phase, and the handler appends one JSON line per call to the
// file. Off (the variable unset or empty), a lap is one branch.
//
// Phases: the setup (the rank's copies and packing of its weight columns, its scratch buffers),
// the input projection of a chunk (with the gathering and rounding of its rows), the
// per-step recurrent products, the gate math (and its VJP), the chunk's weight and input
// gradients (backward), and the barrier waits: the time a rank waited for slower ones, which is
// what an uneven split or two unequally fast cores cost.

#ifndef RNNJAX_CSRC_PROFILE_H_
#define RNNJAX_CSRC_PROFILE_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kernel_shape.h"
#include "team.h"

namespace rnnjax {

enum Phase : int { kSetup, kInput, kProduct, kGates, kWeights, kWait, kPhases };
inline constexpr const char* kPhaseNames[kPhases] = {"setup",   "input", "product",
                                                     "gates",   "weights", "wait"};

class PhaseClock {
 public:
  using Clock = std::chrono::steady_clock;

  void Start(bool on) {
    on_ = on;
    if (on_) last_ = Clock::now();
  }

  void Lap(Phase phase) {
    if (!on_) return;
    const Clock::time_point now = Clock::now();
    seconds_[phase] += std::chrono::duration<double>(now - last_).count();
    last_ = now;
  }

  // Charges the work before it to `phase`, then the wait at the barrier to kWait.
  void Wait(Phase phase, Barrier& barrier) {
    Lap(phase);
    barrier.Wait();
    Lap(kWait);
  }

  bool on() const { return on_; }
  double seconds(int phase) const { return seconds_[phase]; }

 private:
  bool on_ = false;
  double seconds_[kPhases] = {};
  Clock::time_point last_;
};

// The file to append to, or nullptr when profiling is off. Read on every call, so that a process
// can switch it on and off.
inline const char* ProfilePath() {
  const char* path = std::getenv("RNNJAX_NATIVE_PROFILE");
  return path != nullptr && path[0] != '\0' ? path : nullptr;
}

// One line: {"kernel", "kind", "T", "B", "I", "H", "P", "G" (gates), "threads", "keep", "bf16", "wall_ms",
// "ranks": [{phase: ms, ...} per rank that ran]}. Called under g_call_mutex: lines do not mix.
inline void WriteProfile(const char* path, const char* kernel, const Shape& s, int32_t kind,
                         bool keep, int32_t bf16, double wall_seconds,
                         const std::vector<PhaseClock>& clocks) {
  std::FILE* file = std::fopen(path, "a");
  if (file == nullptr) return;  // a profile must not fail the computation
  int ranks = 0;
  for (const PhaseClock& clock : clocks) ranks += clock.on();
  std::fprintf(file,
               "{\"kernel\": \"%s\", \"kind\": %d, \"T\": %lld, \"B\": %lld, \"I\": %lld, "
               "\"H\": %lld, \"P\": %lld, \"G\": %lld, \"threads\": %d, \"keep\": %s, \"bf16\": %d, "
               "\"wall_ms\": %.4f, \"ranks\": [",
               kernel, kind, static_cast<long long>(s.T), static_cast<long long>(s.B),
               static_cast<long long>(s.I), static_cast<long long>(s.H),
               static_cast<long long>(s.P), static_cast<long long>(s.G), ranks, keep ? "true" : "false", bf16,
               1e3 * wall_seconds);
  bool first = true;
  for (const PhaseClock& clock : clocks) {
    if (!clock.on()) continue;  // a worker that did not start
    std::fprintf(file, first ? "{" : ", {");
    first = false;
    for (int phase = 0; phase < kPhases; ++phase)
      std::fprintf(file, "%s\"%s_ms\": %.4f", phase ? ", " : "", kPhaseNames[phase],
                   1e3 * clock.seconds(phase));
    std::fprintf(file, "}");
  }
  std::fprintf(file, "]}\n");
  std::fclose(file);
}

// Runs the team with one clock per rank when profiling is on, and writes the call's line.
template <typename Body>
inline std::string RunProfiledTeam(int threads, const char* kernel, const Shape& s, int32_t kind,
                                   bool keep, int32_t bf16, const Body& body) {
  const char* path = ProfilePath();
  std::vector<PhaseClock> clocks(threads);
  const PhaseClock::Clock::time_point start = PhaseClock::Clock::now();
  const std::string error = RunTeam(threads, [&](int rank, int size, Barrier& barrier) {
    clocks[rank].Start(path != nullptr);
    body(rank, size, barrier, clocks[rank]);
  });
  if (path != nullptr && error.empty()) {
    const double wall =
        std::chrono::duration<double>(PhaseClock::Clock::now() - start).count();
    WriteProfile(path, kernel, s, kind, keep, bf16, wall, clocks);
  }
  return error;
}

}  // namespace rnnjax

#endif  // RNNJAX_CSRC_PROFILE_H_
