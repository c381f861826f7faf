#include "backend/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>
#include <map>
#include <thread>
#include <vector>

namespace umi::cpu {
namespace {

TEST(ThreadPool, RunsEveryIndexExactlyOnce) {
  ThreadPool pool(4);
  for (int64_t n : {1, 3, 17, 1000, 12345}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    pool.parallel_for(n, 7, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
    });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  }
}

// Workers poll for the next job for kSpin after each one, then sleep: an
// idle pool burns no CPU. The process's CPU time over 200 ms of idleness
// (after the poll has ended) stays near zero; four spinning workers would
// spend ~800 ms.
TEST(ThreadPool, IdleWorkersSleep) {
  ThreadPool pool(4);
  std::atomic<int64_t> sum{0};
  pool.parallel_for(1000, 1, [&](int64_t b, int64_t e) { sum += e - b; });
  EXPECT_EQ(sum.load(), 1000);
  std::this_thread::sleep_for(ThreadPool::kSpin * 10 + std::chrono::milliseconds(20));
  const std::clock_t c0 = std::clock();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const double cpu_ms = 1000.0 * static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
  EXPECT_LT(cpu_ms, 40.0);
}

TEST(ThreadPool, ChunksRunEveryIndexExactlyOnce) {
  ThreadPool pool(3);
  for (int64_t n : {1, 5, 16, 17, 1000, 12345}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    std::atomic<int> calls{0};
    pool.parallel_chunks(n, 16, [&](int64_t b, int64_t e) {
      EXPECT_EQ(b % 16, 0);
      EXPECT_TRUE(e == n || e - b == 16);
      ++calls;
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
    });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    EXPECT_EQ(calls.load(), (n + 15) / 16);
  }
}

// A thread held up in its first chunk (the machine took its core) gets the
// rest of its range taken by the other, from the back: it runs that one
// chunk only, where fixed halves would leave it 32.
TEST(ThreadPool, ChunksBalanceAroundASlowThread) {
  ThreadPool pool(2);
  std::mutex mu;
  std::map<std::thread::id, int> chunks_run;
  std::atomic<bool> held{false};
  std::thread::id held_thread;
  pool.parallel_chunks(64, 1, [&](int64_t, int64_t) {
    if (!held.exchange(true)) {  // the first chunk anyone runs
      {
        std::lock_guard lock(mu);
        held_thread = std::this_thread::get_id();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
    }
    std::lock_guard lock(mu);
    ++chunks_run[std::this_thread::get_id()];
  });
  ASSERT_EQ(chunks_run.size(), 2u);
  EXPECT_EQ(chunks_run[held_thread], 1);
  int total = 0;
  for (auto& [id, n] : chunks_run) total += n;
  EXPECT_EQ(total, 64);
}

}  // namespace
}  // namespace umi::cpu
