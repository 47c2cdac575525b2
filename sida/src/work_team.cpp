#include "perfmem/sida/work_team.h"

#include <algorithm>

#include "perfmem/core/thread_pool.h"

namespace perfmem::sida {
namespace {

// Set while this thread runs a loop's chunks: a parallel_for from inside a body runs inline
// (try_lock on a mutex the thread already owns would be undefined).
thread_local bool running_a_loop = false;

struct RunningALoop {
  RunningALoop() { running_a_loop = true; }
  ~RunningALoop() { running_a_loop = false; }
};

}  // namespace

WorkTeam::WorkTeam(size_t helpers, std::chrono::microseconds spin) : spin_(spin) {
  helpers_.reserve(helpers);
  for (size_t i = 0; i < helpers; ++i) helpers_.emplace_back([this] { helper_loop(); });
}

WorkTeam::~WorkTeam() {
  stopping_.store(true);
  { std::lock_guard<std::mutex> lock(sleep_mutex_); }
  wake_.notify_all();
  for (std::thread& t : helpers_) t.join();
}

void WorkTeam::run_chunks() {
  const RunningALoop mark;
  const Body& body = *body_.load(std::memory_order_relaxed);
  const int64_t n = n_.load(std::memory_order_relaxed), chunk = chunk_.load(std::memory_order_relaxed);
  const int64_t chunks = chunks_.load(std::memory_order_relaxed);
  const int64_t threads = int64_t(size());
  for (;;) {
    // Guided claiming: a share of what is left (half of it split over the threads), at least one
    // chunk, so the first runs are long and the last ones short, and the threads finish within
    // about one chunk of each other.
    int64_t c = next_chunk_.load(std::memory_order_relaxed), take = 0;
    do {
      if (c >= chunks) return;
      take = std::max<int64_t>(1, (chunks - c) / (2 * threads));
    } while (!next_chunk_.compare_exchange_weak(c, c + take, std::memory_order_relaxed));
    body(c * chunk, std::min(n, (c + take) * chunk));
    done_chunks_.fetch_add(take, std::memory_order_release);
  }
}

void WorkTeam::parallel_for(int64_t n, int64_t chunk, Body fn) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(1, chunk);
  const int64_t chunks = (n + chunk - 1) / chunk;
  if (chunks == 1 || helpers_.empty() || running_a_loop) {
    fn(0, n);
    return;
  }
  std::unique_lock<std::mutex> owner(loop_owner_, std::try_to_lock);
  if (!owner.owns_lock()) {  // another thread's loop holds the team
    const RunningALoop mark;
    fn(0, n);
    return;
  }
  // No helper is inside a loop here (the previous caller closed its loop at count 0), so the
  // fields may change; the seq_cst store of the state word publishes them.
  body_.store(&fn, std::memory_order_relaxed);
  n_.store(n, std::memory_order_relaxed);
  chunk_.store(chunk, std::memory_order_relaxed);
  chunks_.store(chunks, std::memory_order_relaxed);
  next_chunk_.store(0, std::memory_order_relaxed);
  done_chunks_.store(0, std::memory_order_relaxed);
  const uint64_t generation = (state_.load(std::memory_order_relaxed) >> 32) + 1;
  state_.store((generation << 32) | kOpen);
  // A helper that went to sleep before the store above rechecks the state under sleep_mutex_
  // after announcing itself in sleepers_ (both seq_cst), so either it sees this loop or this
  // load sees it asleep.
  if (sleepers_.load() > 0) {
    { std::lock_guard<std::mutex> lock(sleep_mutex_); }
    wake_.notify_all();
  }
  run_chunks();
  while (done_chunks_.load(std::memory_order_acquire) < chunks) cpu_relax();
  // Close the loop once no helper is inside it (a helper inside finds no chunk left and leaves).
  for (uint64_t expected = (generation << 32) | kOpen;;) {
    if (state_.compare_exchange_weak(expected, generation << 32)) break;
    expected = (generation << 32) | kOpen;
    cpu_relax();
  }
}

void WorkTeam::helper_loop() {
  uint64_t seen_generation = 0;
  for (;;) {
    // Watch for a loop with a newer generation: spin first, then sleep.
    const auto spin_until = std::chrono::steady_clock::now() + spin_;
    uint64_t state = state_.load();
    for (int polls = 0; (state >> 32) == seen_generation || !(state & kOpen); ++polls) {
      if (stopping_.load(std::memory_order_relaxed)) return;
      if (state >> 32 != seen_generation) seen_generation = state >> 32;  // a loop that closed already
      cpu_relax();
      if (polls % 64 == 63 && std::chrono::steady_clock::now() >= spin_until) {
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        sleepers_.fetch_add(1);
        wake_.wait(lock, [&] {
          state = state_.load();
          return stopping_.load() || ((state >> 32) != seen_generation && (state & kOpen));
        });
        sleepers_.fetch_sub(1);
        if (stopping_.load()) return;
        break;
      }
      state = state_.load();
    }
    // Join the open loop of this generation, unless it closed meanwhile.
    const uint64_t generation = state >> 32;
    seen_generation = generation;
    bool joined = false;
    while ((state >> 32) == generation && (state & kOpen)) {
      if (state_.compare_exchange_weak(state, state + 1)) {
        joined = true;
        break;
      }
    }
    if (!joined) continue;
    run_chunks();
    state_.fetch_sub(1);
  }
}

}  // namespace perfmem::sida
