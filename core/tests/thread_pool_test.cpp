#include "perfmem/core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

namespace perfmem {
namespace {

TEST(ThreadPool, SubmitReturnsResults) {
  ThreadPool pool(2);
  std::vector<std::future<int>> results;
  for (int i = 0; i < 100; ++i) results.push_back(pool.submit([i] { return i * i; }));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(results[i].get(), i * i);
}

TEST(ThreadPool, ParallelForCoversRangeExactlyOnce) {
  for (size_t threads : {0u, 1u, 3u}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 7, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.parallel_for(0, n, [&](int64_t b, int64_t e) {
        EXPECT_LE(b, e);
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
      });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[static_cast<size_t>(i)].load(), 1) << i;
    }
  }
}

TEST(ThreadPool, ParallelForHonoursMinChunk) {
  ThreadPool pool(3);
  std::atomic<int> calls{0};
  pool.parallel_for(
      10, 20, [&](int64_t, int64_t) { calls++; }, /*min_chunk=*/100);
  EXPECT_EQ(calls.load(), 1);
}

TEST(ThreadPool, ExceptionsReachTheCaller) {
  ThreadPool pool(2);
  auto f = pool.submit([]() -> int { throw std::runtime_error("boom"); });
  EXPECT_THROW(f.get(), std::runtime_error);
  EXPECT_THROW(pool.parallel_for(0, 100,
                                 [](int64_t b, int64_t) {
                                   if (b > 0) throw std::runtime_error("chunk");
                                 }),
               std::runtime_error);
  // The pool keeps working afterwards.
  EXPECT_EQ(pool.submit([] { return 7; }).get(), 7);
}

// Many short loops in a row, as batched kernels launch them: with workers that spin between
// loops (the default), with workers that always sleep (no spin) and with a long spin, every
// loop covers its range once and returns; a lost wake-up would hang here.
TEST(ThreadPool, ManyShortLoopsInARowWithAndWithoutSpinning) {
  for (auto spin : {ThreadPool::kDefaultSpin, std::chrono::microseconds{0}, std::chrono::microseconds{5000}})
    for (size_t threads : {1u, 3u}) {
      ThreadPool pool(threads, spin);
      int64_t total = 0, expected = 0;
      for (int loop = 0; loop < 5000; ++loop) {
        const int64_t n = 2 + loop % 7;
        std::vector<int64_t> parts(static_cast<size_t>(n), 0);
        pool.parallel_for(0, n, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) parts[static_cast<size_t>(i)] = i + 1;
        });
        total += std::accumulate(parts.begin(), parts.end(), int64_t{0});
        expected += n * (n + 1) / 2;
      }
      EXPECT_EQ(total, expected) << threads << " threads, spin " << spin.count() << " us";
      // Submitted jobs still complete after the loops (a worker may be asleep by now).
      std::this_thread::sleep_for(spin + std::chrono::milliseconds(1));
      EXPECT_EQ(pool.submit([] { return 3; }).get(), 3);
    }
}

// spin_until: true as soon as the condition holds, false (the condition's last answer) once
// the limit has passed.
TEST(ThreadPool, SpinUntilStopsAtTheConditionOrTheLimit) {
  int calls = 0;
  EXPECT_TRUE(spin_until([&] { return ++calls == 3; }, std::chrono::microseconds{1000000}));
  EXPECT_EQ(calls, 3);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(spin_until([] { return false; }, std::chrono::microseconds{2000}));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::microseconds{2000});
}

TEST(ThreadPool, DestructorDrainsQueue) {
  std::atomic<int> done{0};
  {
    ThreadPool pool(1);
    for (int i = 0; i < 50; ++i) (void)pool.submit([&] { done++; });
  }
  EXPECT_EQ(done.load(), 50);
}

}  // namespace
}  // namespace perfmem
