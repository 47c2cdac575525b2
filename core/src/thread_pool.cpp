#include "perfmem/core/thread_pool.h"

#include <algorithm>
#include <exception>

namespace perfmem {

size_t hardware_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

ThreadPool::ThreadPool(size_t num_threads, std::chrono::microseconds spin) : spin_(spin) {
  workers_.reserve(num_threads);
  for (size_t i = 0; i < num_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_.store(true, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::enqueue(std::function<void()> job) {
  if (workers_.empty()) {  // no workers: run inline so submit() still completes
    job();
    return;
  }
  bool someone_sleeps = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(job));
    queued_.store(queue_.size(), std::memory_order_release);
    someone_sleeps = sleeping_ > 0;
  }
  // A worker that is not asleep is spinning or busy and sees the job without a wake-up. No
  // wake-up is lost: a worker counts itself in sleeping_ and tests the queue under the lock.
  if (someone_sleeps) wake_.notify_one();
}

void ThreadPool::worker_loop() {
  for (;;) {
    spin_until(
        [this] { return queued_.load(std::memory_order_acquire) > 0 || stopping_.load(std::memory_order_acquire); },
        spin_);
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ++sleeping_;
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      --sleeping_;
      if (queue_.empty()) return;  // stopping and drained
      job = std::move(queue_.front());
      queue_.pop_front();
      queued_.store(queue_.size(), std::memory_order_release);
    }
    job();
  }
}

void ThreadPool::parallel_for(int64_t begin, int64_t end, const std::function<void(int64_t, int64_t)>& fn,
                              int64_t min_chunk) {
  if (end <= begin) return;
  int64_t total = end - begin;
  min_chunk = std::max<int64_t>(1, min_chunk);
  int64_t max_chunks = static_cast<int64_t>(workers_.size()) + 1;
  int64_t chunks = std::clamp<int64_t>(total / min_chunk, 1, max_chunks);
  if (chunks == 1) {
    fn(begin, end);
    return;
  }
  int64_t per = total / chunks, extra = total % chunks;
  // The chunks' completion: a count the caller spins on, then a condition variable. Shared, so
  // that a worker finishing late never touches a dead frame (the caller waits for the count).
  struct Join {
    std::atomic<int64_t> left;
    std::mutex mutex;
    std::condition_variable finished;
    std::exception_ptr error;  // the first chunk's exception, guarded by mutex
  };
  auto join = std::make_shared<Join>();
  join->left.store(chunks - 1, std::memory_order_relaxed);
  int64_t start = begin;
  int64_t first_end = start + per + (extra > 0 ? 1 : 0);
  int64_t cursor = first_end;
  for (int64_t c = 1; c < chunks; ++c) {
    int64_t len = per + (c < extra ? 1 : 0);
    int64_t b = cursor, e = cursor + len;
    cursor = e;
    enqueue([&fn, b, e, join] {
      try {
        fn(b, e);
      } catch (...) {
        std::lock_guard<std::mutex> lock(join->mutex);
        if (!join->error) join->error = std::current_exception();
      }
      if (join->left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(join->mutex);  // the caller tests `left` under it
        join->finished.notify_all();
      }
    });
  }
  std::exception_ptr first_error;
  try {
    fn(start, first_end);
  } catch (...) { first_error = std::current_exception(); }
  auto all_done = [&join] { return join->left.load(std::memory_order_acquire) == 0; };
  if (!spin_until(all_done, spin_)) {
    std::unique_lock<std::mutex> lock(join->mutex);
    join->finished.wait(lock, all_done);
  }
  {
    std::lock_guard<std::mutex> lock(join->mutex);
    if (!first_error) first_error = join->error;
  }
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace perfmem
