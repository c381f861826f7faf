#include "memory/pool.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "core/error.h"
#include "memory/system_memory.h"

namespace umi {
namespace {

constexpr uint64_t MiB = 1 << 20;

TEST(Pool, AllocationsArePageAlignedAndAccountedInWholePages) {
  Pool pool({.limit = 64 * MiB});
  Buffer b = pool.allocate(100, MemoryUse::scratch);
  ASSERT_TRUE(b);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % page_size(), 0u);
  EXPECT_EQ(b.size(), 100u);
  EXPECT_EQ(b.capacity(), page_size());
  EXPECT_EQ(pool.stats().active, page_size());
  EXPECT_EQ(pool.stats().active_by_use[static_cast<size_t>(MemoryUse::scratch)], page_size());
  std::memset(b.data(), 0xab, b.size());  // writable
}

TEST(Pool, BucketsHaveBoundedSlack) {
  Pool pool({.limit = 1024 * MiB});
  for (uint64_t n : std::initializer_list<uint64_t>{1, 4095, 4097, MiB - 1, MiB + 1, 3 * MiB + 5, 100 * MiB + 7}) {
    uint64_t b = pool.bucket_size(n);
    EXPECT_GE(b, n);
    EXPECT_EQ(b % page_size(), 0u);
    if (n > MiB) EXPECT_LE(b - n, n / 8 + page_size()) << n;
  }
}

TEST(Pool, PeakTracksHighWaterMark) {
  Pool pool({.limit = 256 * MiB});
  {
    Buffer a = pool.allocate(10 * MiB, MemoryUse::activations);
    Buffer b = pool.allocate(20 * MiB, MemoryUse::activations);
    EXPECT_EQ(pool.stats().peak, a.capacity() + b.capacity());
  }
  PoolStats s = pool.stats();
  EXPECT_EQ(s.active, 0u);
  EXPECT_GE(s.peak, 30 * MiB);
  pool.reset_peak();
  EXPECT_EQ(pool.stats().peak, 0u);
  Buffer c = pool.allocate(MiB, MemoryUse::activations);
  EXPECT_EQ(pool.stats().peak, c.capacity());
}

TEST(Pool, LimitRefusesWithClearError) {
  Pool pool({.limit = 32 * MiB, .max_allocation = 32 * MiB});
  Buffer a = pool.allocate(20 * MiB, MemoryUse::kv_cache);
  try {
    pool.allocate(20 * MiB, MemoryUse::kv_cache, "kv block");
    FAIL() << "allocation over the limit succeeded";
  } catch (const OutOfMemory& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("memory limit"), std::string::npos) << msg;
    EXPECT_NE(msg.find("kv block"), std::string::npos) << msg;
    EXPECT_NE(msg.find("32.00 MiB limit"), std::string::npos) << msg;
  }
  EXPECT_FALSE(pool.try_allocate(20 * MiB, MemoryUse::kv_cache));
  EXPECT_EQ(pool.stats().active, a.capacity());  // the refusal changed nothing
  a.reset();
  EXPECT_TRUE(pool.try_allocate(20 * MiB, MemoryUse::kv_cache));
}

TEST(Pool, SingleAllocationMaximumRefuses) {
  Pool pool({.limit = 256 * MiB, .max_allocation = 8 * MiB});
  EXPECT_TRUE(pool.try_allocate(8 * MiB, MemoryUse::scratch));
  try {
    pool.allocate(9 * MiB, MemoryUse::scratch, "logits");
    FAIL();
  } catch (const OutOfMemory& e) {
    EXPECT_NE(std::string(e.what()).find("single-allocation maximum"), std::string::npos) << e.what();
  }
}

TEST(Pool, DefaultMaximumIsAQuarterOfTheLimit) {
  Pool pool({.limit = 400 * MiB});
  EXPECT_EQ(pool.stats().max_allocation, 100 * MiB);
  pool.set_limit(800 * MiB);
  EXPECT_EQ(pool.stats().max_allocation, 200 * MiB);
}

TEST(Pool, FreedBuffersAreReusedFromTheCache) {
  Pool pool({.limit = 256 * MiB});
  void* first;
  {
    Buffer a = pool.allocate(5 * MiB, MemoryUse::activations);
    first = a.data();
  }
  EXPECT_EQ(pool.stats().cached, pool.bucket_size(5 * MiB));
  EXPECT_EQ(pool.stats().active, 0u);
  Buffer b = pool.allocate(5 * MiB - 100, MemoryUse::activations);  // same bucket
  EXPECT_EQ(b.data(), first);
  EXPECT_EQ(pool.stats().cache_hits, 1u);
  EXPECT_EQ(pool.stats().cached, 0u);
}

TEST(Pool, CacheIsEvictedOldestFirstToMakeRoomUnderTheLimit) {
  Pool pool({.limit = 64 * MiB, .max_allocation = 64 * MiB});
  {
    Buffer a = pool.allocate(20 * MiB, MemoryUse::scratch);
    Buffer b = pool.allocate(30 * MiB, MemoryUse::scratch);
  }
  uint64_t cached = pool.stats().cached;
  EXPECT_GE(cached, 50 * MiB);
  // A different size cannot reuse either, and does not fit beside both: the
  // pool evicts cached buffers instead of refusing.
  Buffer c = pool.allocate(40 * MiB, MemoryUse::scratch);
  PoolStats s = pool.stats();
  EXPECT_LE(s.active + s.cached, s.limit);
  EXPECT_LT(s.cached, cached);
}

TEST(Pool, CacheCapIsHonoured) {
  Pool pool({.limit = 256 * MiB, .max_cached = 10 * MiB});
  { Buffer a = pool.allocate(8 * MiB, MemoryUse::scratch); }
  EXPECT_EQ(pool.stats().cached, 8 * MiB);
  { Buffer b = pool.allocate(6 * MiB, MemoryUse::scratch); }
  EXPECT_LE(pool.stats().cached, 10 * MiB);
}

TEST(Pool, ReleaseCacheReturnsMemoryToTheSystem) {
  Pool pool({.limit = 2048 * MiB, .max_allocation = 1024 * MiB});
  uint64_t rss0 = resident_set_bytes();
  {
    Buffer a = pool.allocate(256 * MiB, MemoryUse::activations);
    std::memset(a.data(), 1, a.size());  // make it resident
  }
  uint64_t rss_cached = resident_set_bytes();
  EXPECT_GE(rss_cached, rss0 + 200 * MiB) << "touched buffer should be resident";
  EXPECT_GE(pool.stats().cached, 256 * MiB);
  uint64_t released = pool.release_cache();
  EXPECT_GE(released, 256 * MiB);
  EXPECT_EQ(pool.stats().cached, 0u);
  uint64_t rss_after = resident_set_bytes();
  EXPECT_LT(rss_after, rss_cached - 200 * MiB) << "release_cache must give pages back";
}

TEST(Pool, ReservationsCountAgainstTheLimit) {
  Pool pool({.limit = 100 * MiB});
  Reservation weights = pool.reserve(80 * MiB, MemoryUse::weights, "model weights");
  EXPECT_EQ(pool.stats().active_by_use[static_cast<size_t>(MemoryUse::weights)], 80 * MiB);
  EXPECT_FALSE(pool.try_allocate(24 * MiB, MemoryUse::kv_cache));
  EXPECT_FALSE(pool.try_reserve(21 * MiB, MemoryUse::weights));
  EXPECT_THROW(pool.reserve(21 * MiB, MemoryUse::weights), OutOfMemory);
  weights.reset();
  EXPECT_EQ(pool.stats().active, 0u);
  EXPECT_TRUE(pool.try_allocate(24 * MiB, MemoryUse::kv_cache));
}

TEST(Pool, LoweringTheLimitEvictsCacheAndRefusesNewWork) {
  Pool pool({.limit = 100 * MiB, .max_allocation = 100 * MiB});
  Buffer a = pool.allocate(30 * MiB, MemoryUse::scratch);
  { Buffer b = pool.allocate(30 * MiB, MemoryUse::scratch); }
  pool.set_limit(40 * MiB);
  PoolStats s = pool.stats();
  EXPECT_EQ(s.cached, 0u);
  EXPECT_FALSE(pool.try_allocate(20 * MiB, MemoryUse::scratch));
}

TEST(Pool, BuffersMoveWithoutDoubleFree) {
  Pool pool({.limit = 64 * MiB});
  Buffer a = pool.allocate(MiB, MemoryUse::other);
  Buffer b = std::move(a);
  EXPECT_FALSE(a);
  EXPECT_TRUE(b);
  Buffer c;
  c = std::move(b);
  EXPECT_EQ(pool.stats().live_buffers, 1u);
  c.reset();
  EXPECT_EQ(pool.stats().live_buffers, 0u);
  EXPECT_EQ(pool.stats().active, 0u);
}

TEST(Pool, NoLeakAfter100kCycles) {
  Pool pool({.limit = 512 * MiB});
  std::mt19937 rng(7);
  std::uniform_int_distribution<size_t> size(1, 3 * MiB);
  std::vector<Buffer> live;
  for (int i = 0; i < 100000; ++i) {
    if (live.size() < 16 && (rng() & 1)) {
      live.push_back(pool.allocate(size(rng), static_cast<MemoryUse>(rng() % kMemoryUseCount)));
      static_cast<char*>(live.back().data())[0] = 1;
    } else if (!live.empty()) {
      live.erase(live.begin() + static_cast<long>(rng() % live.size()));
    }
  }
  live.clear();
  PoolStats s = pool.stats();
  EXPECT_EQ(s.active, 0u);
  EXPECT_EQ(s.live_buffers, 0u);
  for (uint64_t by_use : s.active_by_use) EXPECT_EQ(by_use, 0u);
  EXPECT_GT(s.cache_hits, 0u);
  EXPECT_LE(s.cached, s.limit);
  pool.release_cache();
  EXPECT_EQ(pool.stats().cached, 0u);
}

TEST(Pool, ConcurrentUseKeepsCountsExact) {
  Pool pool({.limit = 512 * MiB});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&pool, t] {
      for (int i = 0; i < 2000; ++i) {
        Buffer b = pool.allocate(static_cast<size_t>(4096 * (1 + (i + t) % 64)), MemoryUse::scratch);
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(pool.stats().active, 0u);
  EXPECT_EQ(pool.stats().live_buffers, 0u);
}

}  // namespace
}  // namespace umi

namespace umi {
namespace {

// A source that counts what the pool maps and unmaps (a device backend's
// cudaMalloc in real use): the pool's accounting and caching are the same.
class CountingSource final : public MemorySource {
 public:
  void* allocate(uint64_t bytes) override {
    if (refuse) return nullptr;
    ++maps;
    live += bytes;
    return ::operator new(bytes);
  }
  void free(void* ptr, uint64_t bytes) override {
    ++unmaps;
    live -= bytes;
    ::operator delete(ptr);
  }
  int maps = 0, unmaps = 0;
  uint64_t live = 0;
  bool refuse = false;
};

TEST(Pool, DrawsFromItsMemorySourceAndGivesEverythingBack) {
  CountingSource source;
  {
    Pool pool({.source = &source, .limit = 64u << 20});
    Buffer a = pool.allocate(1u << 20, MemoryUse::kv_cache);
    EXPECT_EQ(source.maps, 1);
    a.reset();
    Buffer b = pool.allocate(1u << 20, MemoryUse::kv_cache);  // from the cache
    EXPECT_EQ(source.maps, 1);
    EXPECT_EQ(pool.stats().cache_hits, 1u);
    b.reset();
    EXPECT_GT(pool.release_cache(), 0u);
    EXPECT_EQ(source.unmaps, 1);
    EXPECT_EQ(source.live, 0u);
    source.refuse = true;  // the device is full although the budget is not
    EXPECT_FALSE(pool.try_allocate(4096, MemoryUse::other));
    EXPECT_THROW(pool.allocate(4096, MemoryUse::other, "x"), OutOfMemory);
    source.refuse = false;
    Buffer c = pool.allocate(8192, MemoryUse::other);
  }  // the pool's destructor returns its cache
  EXPECT_EQ(source.live, 0u);
  EXPECT_EQ(source.maps, source.unmaps);
}

}  // namespace
}  // namespace umi
