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
#pragma once

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
  explicit ThreadPool(size_t num_threads);
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

  std::vector<std::thread> workers_;
  std::deque<std::function<void()>> queue_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
};

// Number of hardware threads (at least 1).
size_t hardware_threads();

}  // namespace perfmem
