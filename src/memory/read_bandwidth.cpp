#include "memory/read_bandwidth.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace umi {

namespace {
using Clock = std::chrono::steady_clock;

// Eight independent 64-bit sums: integer adds may be reordered, so the
// compiler vectorizes the loop; the loop is load-bound, not add-bound.
uint64_t sum_words(const std::byte* p, size_t bytes) {
  const size_t n = bytes / sizeof(uint64_t) / 8 * 8;
  uint64_t s[8] = {};
  for (size_t i = 0; i < n; i += 8)
    for (size_t j = 0; j < 8; ++j) {
      uint64_t w;
      std::memcpy(&w, p + (i + j) * sizeof(uint64_t), sizeof w);
      s[j] += w;
    }
  return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

// A page at a time, touching the first line of the next one: the
// hardware prefetchers stop at every 4 KB boundary, and the touch has them
// stream each page from its start (the Q4_0 decode kernel does the same).
// Pages are the address space's (a slice may start inside one). The plain
// loop alone read ~50 GB/s where this reads ~57 (two threads, 0.7-1.3 GB,
// session 14); a roofline below what the kernels stream would flatter them
// (Q8_0 decode measured 1.05 of the plain read).
constexpr uintptr_t kPage = 4096;
uint64_t sum_pages(const std::byte* p, size_t bytes) {
  const std::byte* end = p + bytes;
  uint64_t s = 0;
  while (p < end) {
    const std::byte* next = reinterpret_cast<const std::byte*>((reinterpret_cast<uintptr_t>(p) + kPage) & ~(kPage - 1));
    if (next < end) __builtin_prefetch(next);
    const size_t n = static_cast<size_t>(std::min(next, end) - p);
    s += sum_words(p, n);
    p += n;
  }
  return s;
}
}  // namespace

double read_bandwidth(const std::byte* data, size_t bytes, int threads, int passes) {
  threads = std::max(1, threads);
  double best = 0;
  std::vector<uint64_t> sums(static_cast<size_t>(threads));
  std::vector<Clock::time_point> ends(static_cast<size_t>(threads));
  for (int pass = 0; pass < passes; ++pass) {
    // The threads start together on a flag and each notes when it is done:
    // their creation stays out of the time.
    std::atomic<bool> go{false};
    std::atomic<int> ready{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        const size_t b = bytes * static_cast<size_t>(t) / static_cast<size_t>(threads) / 64 * 64;
        const size_t e = bytes * static_cast<size_t>(t + 1) / static_cast<size_t>(threads) / 64 * 64;
        ++ready;
        while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
        sums[static_cast<size_t>(t)] = sum_pages(data + b, e - b);
        ends[static_cast<size_t>(t)] = Clock::now();
      });
    while (ready.load() < threads) std::this_thread::yield();
    const Clock::time_point t0 = Clock::now();
    go.store(true, std::memory_order_release);
    for (std::thread& t : pool) t.join();
    const double s = std::chrono::duration<double>(*std::max_element(ends.begin(), ends.end()) - t0).count();
    best = std::max(best, static_cast<double>(bytes) / s);
  }
  // The sums must look used, or the loads could go.
  volatile uint64_t sink = 0;
  for (uint64_t v : sums) sink = sink + v;
  return best;
}

}  // namespace umi
