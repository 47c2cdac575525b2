// A fixed-size pool of worker threads.
//
//   perfmem::ThreadPool pool(2);
//   auto done = pool.submit([] { return heavy(); });   // std::future<T>
//   pool.parallel_for(0, rows, [&](int64_t begin, int64_t end) { gemv_rows(begin, end); });
//
// Threads start in the constructor and are joined in the destructor after the queue drains.
// parallel_for splits [begin, end) into at most size()+1 contiguous chunks; the calling thread
// runs one chunk itself, so a pool of N threads gives N+1 way parallelism and a pool of 0
// threads runs everything inline. Exceptions thrown by a task reach the caller through the
// future (submit) or are rethrown by parallel_for after all chunks finished.
//
// Fork-join loops of tens of microseconds (a batched kernel launch) are common, and waking a
// sleeping thread costs a futex and, in a virtual machine, an inter-processor interrupt: tens of
// microseconds. So a worker that finds the queue empty spins for up to `spin` (watching the
// queue's length, no lock) before it sleeps, and parallel_for's caller spins on its chunks'
// completion count before it blocks. Spinning uses a core only while the pool is busy in bursts.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace perfmem {

class ThreadPool {
 public:
  static constexpr std::chrono::microseconds kDefaultSpin{100};

  explicit ThreadPool(size_t num_threads, std::chrono::microseconds spin = kDefaultSpin);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t size() const { return workers_.size(); }

  template <typename F>
  auto submit(F&& fn) -> std::future<std::invoke_result_t<F>> {
    using R = std::invoke_result_t<F>;
    auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(fn));
    std::future<R> result = task->get_future();
    enqueue([task] { (*task)(); });
    return result;
  }

  // Calls fn(chunk_begin, chunk_end) over disjoint chunks covering [begin, end); blocks until
  // every chunk has run. min_chunk bounds how finely the range is split.
  void parallel_for(int64_t begin, int64_t end, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk = 1);

 private:
  void enqueue(std::function<void()> job);
  void worker_loop();

  std::chrono::microseconds spin_;
  std::vector<std::thread> workers_;
  std::deque<std::function<void()>> queue_;  // guarded by mutex_
  std::atomic<size_t> queued_{0};            // queue_.size(), readable without the lock
  std::mutex mutex_;
  std::condition_variable wake_;
  size_t sleeping_ = 0;                // workers waiting on wake_ (guarded by mutex_): notify only when > 0
  std::atomic<bool> stopping_{false};  // set under mutex_, read while spinning too
};

// Tells the core that this thread is spinning (x86 pause, aarch64 yield): its sibling hardware
// thread gets the issue slots, and the spin draws less power.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Calls done() until it returns true or `limit` has passed; returns its last answer; cpu_relax()
// between calls.
template <typename Done>
bool spin_until(Done&& done, std::chrono::microseconds limit) {
  const auto start = std::chrono::steady_clock::now();
  for (unsigned i = 1;; ++i) {
    if (done()) return true;
    cpu_relax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() - start >= limit) return done();
  }
}

// Number of hardware threads (at least 1).
size_t hardware_threads();

}  // namespace perfmem
