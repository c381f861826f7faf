// The block pool's invariants, in the style of vLLM's block-pool tests: ref
// counts, the prefix cache's hash chain, eviction order, and that no block is
// ever both free and in use.
#include "model/kv_block_pool.h"

#include <gtest/gtest.h>

#include <random>
#include <set>

#include "core/error.h"
#include "memory/system_memory.h"

namespace umi {
namespace {

KvLayout small_layout() { return {.block_tokens = 4, .n_layers = 2, .kv_dim = 8, .dtype = DType::F32}; }  // 512 B

// A pool whose budget holds exactly `blocks` KV blocks.
struct Fixture {
  explicit Fixture(int blocks)
      : pool({.limit = static_cast<uint64_t>(blocks) * page_size(), .max_allocation = page_size()}), kv(pool, small_layout()) {}
  Pool pool;
  KvBlockPool kv;
};

std::vector<int32_t> toks(int32_t a) { return {a, a + 1, a + 2, a + 3}; }

TEST(KvBlockPool, RefCountsDecideWhenMemoryGoesBack) {
  Fixture f(4);
  int32_t a = *f.kv.allocate();
  EXPECT_EQ(f.kv.ref_count(a), 1);
  f.kv.retain(a);
  f.kv.release(a);
  EXPECT_EQ(f.kv.in_use(), 1);
  EXPECT_GT(f.pool.stats().active, 0u);
  f.kv.release(a);  // unpublished: memory back to the pool
  EXPECT_EQ(f.kv.in_use(), 0);
  EXPECT_EQ(f.kv.stats().cached, 0);
  EXPECT_EQ(f.pool.stats().active, 0u);
  EXPECT_THROW(f.kv.release(a), Error);  // double free is caught, not corrupting
}

TEST(KvBlockPool, PublishedBlocksAreFoundByTheirChainedContent) {
  Fixture f(8);
  int32_t b0 = *f.kv.allocate(), b1 = *f.kv.allocate();
  const uint64_t salt = 7;
  uint64_t h0 = f.kv.publish(b0, salt, toks(10));
  uint64_t h1 = f.kv.publish(b1, h0, toks(20));
  EXPECT_EQ(h0, kv_block_hash(salt, toks(10)));
  EXPECT_NE(h1, kv_block_hash(salt, toks(20)));  // the same tokens after another prefix are another block
  EXPECT_EQ(f.kv.find(salt, toks(10)), b0);
  EXPECT_EQ(f.kv.ref_count(b0), 2);
  EXPECT_EQ(f.kv.find(h0, toks(20)), b1);
  EXPECT_FALSE(f.kv.find(salt, toks(20)));  // right tokens, wrong parent
  EXPECT_FALSE(f.kv.find(8, toks(10)));     // another salt (model, user) shares nothing
  // Publishing the same content twice keeps the first block; the second stays private.
  int32_t dup = *f.kv.allocate();
  EXPECT_EQ(f.kv.publish(dup, salt, toks(10)), h0);
  f.kv.release(dup);
  EXPECT_EQ(f.kv.stats().cached, 0);
  EXPECT_EQ(f.kv.find(salt, toks(10)), b0);
}

TEST(KvBlockPool, ReleasedPublishedBlocksStayCachedUntilTheirMemoryIsNeeded) {
  Fixture f(3);
  int32_t ids[3];
  uint64_t parent = 0;
  for (int i = 0; i < 3; ++i) {
    ids[i] = *f.kv.allocate();
    parent = f.kv.publish(ids[i], parent, toks(4 * i));
  }
  EXPECT_FALSE(f.kv.allocate());  // budget full, nothing cached
  f.kv.release(ids[1]);
  f.kv.release(ids[0]);
  f.kv.release(ids[2]);
  EXPECT_EQ(f.kv.stats().cached, 3);
  EXPECT_EQ(f.kv.in_use(), 0);
  // Least recently released goes first: ids[1], then ids[0].
  int32_t n1 = *f.kv.allocate();
  EXPECT_EQ(n1, ids[1]);
  EXPECT_EQ(f.kv.ref_count(n1), 1);
  EXPECT_EQ(f.kv.find(kv_block_hash(0, toks(0)), toks(4)), std::nullopt);  // its content is gone
  // A hit takes a cached block out of the eviction list.
  EXPECT_EQ(f.kv.find(0, toks(0)), ids[0]);
  int32_t n2 = *f.kv.allocate();
  EXPECT_EQ(n2, ids[2]);
  EXPECT_FALSE(f.kv.allocate());
  EXPECT_EQ(f.kv.stats().evictions, 2);
}

TEST(KvBlockPool, EvictGivesCachedMemoryBackLeastRecentFirst) {
  Fixture f(4);
  std::vector<int32_t> ids;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(*f.kv.allocate());
    f.kv.publish(ids.back(), 100 + i, toks(0));
    f.kv.release(ids.back());
  }
  EXPECT_EQ(f.kv.evict(3), 3);
  EXPECT_EQ(f.kv.stats().cached, 1);
  EXPECT_EQ(f.kv.find(103, toks(0)), ids[3]);  // the most recent survived
  EXPECT_EQ(f.kv.evict(5), 0);                 // in use: not evictable
  f.kv.release(ids[3]);
  EXPECT_EQ(f.kv.evict(5), 1);
  EXPECT_EQ(f.pool.stats().active, 0u);
}

// Random operations; after each, every id is in exactly one state and the
// counters agree with a model of the pool kept by the test.
TEST(KvBlockPool, RandomWorkloadKeepsEveryInvariant) {
  Fixture f(16);
  std::mt19937 rng(5);
  std::multiset<int32_t> held;  // one entry per reference we hold
  for (int step = 0; step < 20000; ++step) {
    const int op = static_cast<int>(rng() % 4);
    if (op == 0) {
      if (auto id = f.kv.allocate()) held.insert(*id);
    } else if (op == 1 && !held.empty()) {
      auto it = std::next(held.begin(), static_cast<long>(rng() % held.size()));
      f.kv.release(*it);
      held.erase(it);
    } else if (op == 2 && !held.empty()) {
      auto it = std::next(held.begin(), static_cast<long>(rng() % held.size()));
      f.kv.publish(*it, rng() % 8, toks(static_cast<int32_t>(rng() % 8)));
    } else if (op == 3) {
      if (auto id = f.kv.find(rng() % 8, toks(static_cast<int32_t>(rng() % 8)))) held.insert(*id);
    }
    std::set<int32_t> distinct(held.begin(), held.end());
    ASSERT_EQ(f.kv.in_use(), static_cast<int64_t>(distinct.size()));
    for (int32_t id : distinct) ASSERT_EQ(f.kv.ref_count(id), static_cast<int32_t>(held.count(id)));
    ASSERT_LE(f.kv.in_use() + f.kv.stats().cached, 16);
    ASSERT_LE(f.pool.stats().active, f.pool.limit());
  }
  while (!held.empty()) {
    f.kv.release(*held.begin());
    held.erase(held.begin());
  }
  f.kv.evict(1 << 20);
  EXPECT_EQ(f.pool.stats().active, 0u);
}

}  // namespace
}  // namespace umi
