// A team of threads for the many short parallel loops of a decoding step.
//
//   perfmem::sida::WorkTeam team(1);                       // the caller plus one helper thread
//   team.parallel_for(blocks, /*chunk=*/16, [&](int64_t begin, int64_t end) { rows(begin, end); });
//
// A decoding step runs about ten matrix-vector products per layer, each reading a few hundred
// kilobytes to a few megabytes of weights: tens of microseconds to a millisecond. Handing each to a
// sleeping pool thread costs a wake-up (a futex and, in a virtual machine, an inter-processor
// interrupt) that is a sizeable part of the product itself, and a fixed split waits for the
// thread that woke last. A WorkTeam's helpers instead spin for a short while (`spin`) after each
// loop, watching for the next one, and only then sleep; the caller and the helpers claim chunks of
// the range as they go (guided: runs of about (chunks left) / (2 × threads) chunks, at least one),
// so the first runs are long, the last ones a single chunk, and a helper that starts late takes
// fewer instead of delaying the end.
//
// Invariants: parallel_for calls fn on disjoint runs of whole chunks [begin, end) that cover
// [0, n) exactly once, and returns after every call returned, with their writes visible to the
// caller. Which thread runs a chunk is not specified, so fn must give results that do not depend
// on it. One loop runs at a time: a parallel_for that finds the team busy (another thread's loop,
// or a nested call from fn) runs its whole range on the calling thread. fn must not throw.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace perfmem::sida {

class WorkTeam {
 public:
  // A non-owning reference to the loop body: parallel_for's callers pass lambdas that live on
  // their stack for the whole call.
  class Body {
   public:
    template <typename F>
    Body(const F& fn)  // NOLINT(google-explicit-constructor): lambdas convert implicitly
        : object_(&fn), call_([](const void* o, int64_t b, int64_t e) { (*static_cast<const F*>(o))(b, e); }) {}
    void operator()(int64_t begin, int64_t end) const { call_(object_, begin, end); }

   private:
    const void* object_;
    void (*call_)(const void*, int64_t, int64_t);
  };

  static constexpr std::chrono::microseconds kDefaultSpin{200};

  explicit WorkTeam(size_t helpers, std::chrono::microseconds spin = kDefaultSpin);
  ~WorkTeam();
  WorkTeam(const WorkTeam&) = delete;
  WorkTeam& operator=(const WorkTeam&) = delete;

  // Threads that run a loop: the helpers and the caller.
  size_t size() const { return helpers_.size() + 1; }

  // Calls fn(begin, end) on runs of whole chunks of [0, n) (chunks [0, chunk), [chunk, 2 chunk),
  // ..., the last one shorter) that together cover [0, n) once, spread over the caller and the
  // helpers (guided runs, above) when the team runs the loop, the whole range in one call when
  // it runs inline. chunk < 1 counts as 1: `chunk` is the finest split, not the usual one.
  void parallel_for(int64_t n, int64_t chunk, Body fn);

 private:
  // The team's state word: the loop's generation in the high 32 bits, whether helpers may join it
  // (bit 31: open), and how many helpers are inside it (low 31 bits). A helper joins by
  // incrementing the count while the word says open; the caller closes the loop only when the
  // count is 0, so the loop's fields below never change while a helper reads them.
  static constexpr uint64_t kOpen = uint64_t(1) << 31;
  static constexpr uint64_t kInsideMask = kOpen - 1;

  void helper_loop();
  // Claims and runs chunks of the current loop until none is left.
  void run_chunks();

  std::vector<std::thread> helpers_;
  const std::chrono::microseconds spin_;
  std::mutex loop_owner_;  // held by the thread whose loop the team runs

  std::atomic<uint64_t> state_{0};
  // The current loop (written by its caller before the state word opens it).
  std::atomic<const Body*> body_{nullptr};
  std::atomic<int64_t> n_{0}, chunk_{1}, chunks_{0};
  std::atomic<int64_t> next_chunk_{0}, done_chunks_{0};

  // Sleeping helpers.
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stopping_{false};
};

}  // namespace perfmem::sida
