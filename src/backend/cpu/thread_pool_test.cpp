#include "backend/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
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
      EXPECT_TRUE(e == n || (e - b) % 16 == 0);
      EXPECT_LT(b, e);
      ++calls;
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
    });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
    EXPECT_LE(calls.load(), (n + 15) / 16);
  }
}

// A thread's takes from its own range are an eighth of what is left of it:
// one locked take per call, far fewer calls than chunks, shrinking to single
// chunks at the range's end; then it takes the others' chunks one at a time.
// The worker is held in its calls until the calling thread has run out of
// its own range (its first call beyond it), so that no steal cuts the
// calling thread's sequence short and the sequence is exact: 771 (an eighth
// of its 6,173 of 12,345 chunks), 675, ... 1.
TEST(ThreadPool, OwnersTakeAShareOfWhatIsLeft) {
  ThreadPool pool(2);
  constexpr int64_t kChunks = 12345, kOwn = 6173;  // the caller's range: the first (larger) half
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<bool> caller_done{false};
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> caller_calls;
  std::vector<int64_t> worker_sizes;
  pool.parallel_chunks(kChunks, 1, [&](int64_t b, int64_t e) {
    if (std::this_thread::get_id() != caller) {
      while (!caller_done.load()) std::this_thread::sleep_for(std::chrono::microseconds(50));
      std::lock_guard lock(mu);
      worker_sizes.push_back(e - b);
      return;
    }
    if (b >= kOwn) caller_done = true;  // a steal: its own range is gone
    std::lock_guard lock(mu);
    caller_calls.emplace_back(b, e);
  });
  std::vector<int64_t> expected;
  for (int64_t left = kOwn; left > 0; left -= expected.back()) expected.push_back(std::max<int64_t>(1, left / 8));
  ASSERT_GE(caller_calls.size(), expected.size());
  int64_t at = 0, total = 0;
  for (size_t i = 0; i < caller_calls.size(); ++i) {
    const auto [b, e] = caller_calls[i];
    total += e - b;
    if (i < expected.size()) {  // its own range, front to back
      EXPECT_EQ(b, at) << i;
      EXPECT_EQ(e - b, expected[i]) << i;
      at = e;
    } else {
      EXPECT_EQ(e - b, 1) << i;  // the worker's chunks, one at a time
    }
  }
  EXPECT_EQ(expected.front(), 771);
  EXPECT_LT(expected.size(), 80u);  // ~8 ln(6173) calls, not 6,173
  for (size_t i = 0; i < worker_sizes.size(); ++i) {
    total += worker_sizes[i];
    if (i > 0) EXPECT_LE(worker_sizes[i], worker_sizes[i - 1]);
  }
  EXPECT_EQ(total, kChunks);
}

// A thread held up in its first take (the machine took its core) gets the
// rest of its range taken by the other, from the back: it runs that take's
// 4 chunks (an eighth of its 32) only, where fixed halves would leave it 32.
TEST(ThreadPool, ChunksBalanceAroundASlowThread) {
  ThreadPool pool(2);
  std::mutex mu;
  std::map<std::thread::id, int64_t> chunks_run;
  std::atomic<bool> held{false};
  std::atomic<int64_t> others{0};
  std::thread::id held_thread;
  pool.parallel_chunks(64, 1, [&](int64_t b, int64_t e) {
    if (!held.exchange(true)) {  // the first chunk anyone runs
      {
        std::lock_guard lock(mu);
        held_thread = std::this_thread::get_id();
      }
      // Held until the other thread has run everything else (or 20 s).
      for (int i = 0; i < 20000 && others.load() < 60; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      std::lock_guard lock(mu);
      chunks_run[std::this_thread::get_id()] += e - b;
      return;
    }
    others += e - b;
    std::lock_guard lock(mu);
    chunks_run[std::this_thread::get_id()] += e - b;
  });
  ASSERT_EQ(chunks_run.size(), 2u);
  EXPECT_EQ(chunks_run[held_thread], 4);
  int64_t total = 0;
  for (auto& [id, n] : chunks_run) total += n;
  EXPECT_EQ(total, 64);
}

}  // namespace
}  // namespace umi::cpu
