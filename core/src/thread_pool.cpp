#include "perfmem/core/thread_pool.h"

#include <algorithm>
#include <exception>

namespace perfmem {

size_t hardware_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

ThreadPool::ThreadPool(size_t num_threads) {
  workers_.reserve(num_threads);
  for (size_t i = 0; i < num_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::enqueue(std::function<void()> job) {
  if (workers_.empty()) {  // no workers: run inline so submit() still completes
    job();
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(job));
  }
  wake_.notify_one();
}

void ThreadPool::worker_loop() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      job = std::move(queue_.front());
      queue_.pop_front();
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
  std::vector<std::future<void>> pending;
  pending.reserve(static_cast<size_t>(chunks - 1));
  int64_t start = begin;
  int64_t first_end = start + per + (extra > 0 ? 1 : 0);
  int64_t cursor = first_end;
  for (int64_t c = 1; c < chunks; ++c) {
    int64_t len = per + (c < extra ? 1 : 0);
    int64_t b = cursor, e = cursor + len;
    cursor = e;
    pending.push_back(submit([&fn, b, e] { fn(b, e); }));
  }
  std::exception_ptr first_error;
  try {
    fn(start, first_end);
  } catch (...) { first_error = std::current_exception(); }
  for (auto& f : pending) {
    try {
      f.get();
    } catch (...) {
      if (!first_error) first_error = std::current_exception();
    }
  }
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace perfmem
