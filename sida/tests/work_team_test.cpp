// WorkTeam: every chunk exactly once, with the callers' and helpers' writes visible on return,
// whether the helpers are spinning or asleep, for concurrent callers and nested loops.
#include "perfmem/sida/work_team.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace perfmem::sida {
namespace {

// Runs one loop and checks that each index of [0, n) was visited once, by runs of whole chunks.
void expect_each_index_once(WorkTeam& team, int64_t n, int64_t chunk) {
  std::vector<int> visits(size_t(n), 0);  // plain ints: the team must make the writes visible
  std::atomic<int64_t> bad_chunks{0};
  team.parallel_for(n, chunk, [&](int64_t begin, int64_t end) {
    const int64_t c = std::max<int64_t>(1, chunk);
    if (begin % c != 0 || (end % c != 0 && end != n) || end > n || begin >= end) bad_chunks.fetch_add(1);
    for (int64_t i = begin; i < end; ++i) ++visits[size_t(i)];
  });
  EXPECT_EQ(bad_chunks.load(), 0) << "n " << n << " chunk " << chunk;
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(visits[size_t(i)], 1) << "index " << i << " of " << n;
}

TEST(WorkTeam, CoversEveryIndexOnceForAnyRangeAndChunk) {
  WorkTeam team(1);
  for (int64_t n : {0, 1, 2, 3, 7, 64, 1000, 4099})
    for (int64_t chunk : {-3, 0, 1, 2, 5, 16, 5000}) expect_each_index_once(team, n, chunk);
}

TEST(WorkTeam, ManyBackToBackLoopsWithSpinningHelpers) {
  WorkTeam team(3);
  EXPECT_EQ(team.size(), 4u);
  for (int round = 0; round < 2000; ++round) expect_each_index_once(team, 97, 3);
}

TEST(WorkTeam, HelpersThatFellAsleepAreWokenForTheNextLoop) {
  WorkTeam team(2, std::chrono::microseconds(0));  // helpers sleep at once between loops
  for (int round = 0; round < 200; ++round) {
    if (round % 20 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    expect_each_index_once(team, 256, 1);
  }
}

TEST(WorkTeam, HelpersTakePartInLongLoops) {
  WorkTeam team(1);
  std::atomic<int> threads_seen_mask{0};
  const std::thread::id caller = std::this_thread::get_id();
  // Chunks that wait for each other until both threads have run one (bounded, so a team whose
  // helper never joins fails the expectation instead of hanging).
  team.parallel_for(2, 1, [&](int64_t, int64_t) {
    threads_seen_mask.fetch_or(std::this_thread::get_id() == caller ? 1 : 2);
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (threads_seen_mask.load() != 3 && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  });
  EXPECT_EQ(threads_seen_mask.load(), 3) << "the helper never ran a chunk";
}

TEST(WorkTeam, ConcurrentCallersAndNestedLoopsRunInline) {
  WorkTeam team(1);
  std::vector<std::thread> callers;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&] {
      for (int round = 0; round < 300; ++round) {
        std::vector<int> visits(40 * 40, 0);
        team.parallel_for(40, 3, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i)  // a nested loop over the inner index
            team.parallel_for(40, 7, [&](int64_t b, int64_t e) {
              for (int64_t j = b; j < e; ++j) ++visits[size_t(i * 40 + j)];
            });
        });
        for (int v : visits)
          if (v != 1) failures.fetch_add(1);
      }
    });
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(WorkTeam, ATeamWithoutHelpersRunsOnTheCaller) {
  WorkTeam team(0);
  EXPECT_EQ(team.size(), 1u);
  expect_each_index_once(team, 100, 7);
}

}  // namespace
}  // namespace perfmem::sida
