// Owner of the KV blocks (vLLM's block pool, with memory drawn on demand from
// the accounted pool instead of pre-allocated): integer ids, reference
// counts, and a prefix cache of full blocks keyed by content.
//
// A full block can be published under a chained hash of its content
// (parent block's hash + its token ids; the first block's parent is a salt).
// When its last holder releases it, a published block is not freed but kept,
// evictable, in a least-recently-released list; a later request with the same
// prefix finds and shares it. A new block takes memory from the pool, or when
// the pool refuses, the least recently released cached block (O(1)). Hash
// collisions cannot mix content: a hit is checked against the stored parent
// hash and token ids.
//
// States of an id: free (no memory), in use (ref > 0), or cached (ref 0,
// published, in the LRU list). Every operation is O(1) but the token-id
// comparison on a hit.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "memory/pool.h"
#include "model/kv_layout.h"

namespace umi {

// Chained content hash of a full block.
uint64_t kv_block_hash(uint64_t parent, std::span<const int32_t> tokens);

struct KvBlockStats {
  int64_t in_use = 0;  // referenced by at least one sequence
  int64_t cached = 0;  // unreferenced, holding a published prefix, evictable
  int64_t hits = 0, misses = 0, evictions = 0;
};

class KvBlockPool {
 public:
  KvBlockPool(Pool& pool, KvLayout layout);
  ~KvBlockPool();
  KvBlockPool(const KvBlockPool&) = delete;
  KvBlockPool& operator=(const KvBlockPool&) = delete;

  // A block for one holder (ref 1), or nullopt when the memory budget holds
  // no more and nothing cached can be evicted.
  std::optional<int32_t> allocate();
  void retain(int32_t id);
  // Drops one reference; at zero a published block becomes cached, any other
  // gives its memory back to the pool.
  void release(int32_t id);

  // Marks an in-use full block as holding `tokens` after the prefix `parent`.
  // Returns its hash (the next block's parent). If another block already
  // holds that content, this one stays unpublished.
  uint64_t publish(int32_t id, uint64_t parent, std::span<const int32_t> tokens);
  // The block holding `tokens` after `parent`, retained for the caller.
  std::optional<int32_t> find(uint64_t parent, std::span<const int32_t> tokens);

  // Gives the memory of up to `blocks` cached blocks back to the pool (least
  // recently used first); returns how many went.
  int64_t evict(int64_t blocks);

  std::byte* data(int32_t id) const { return meta_[static_cast<size_t>(id)].buffer.as<std::byte>(); }
  const KvLayout& layout() const { return layout_; }
  Pool& memory() const { return pool_; }  // where blocks come from (host or device)
  int64_t in_use() const { return stats_.in_use; }
  int64_t ref_count(int32_t id) const { return meta_[static_cast<size_t>(id)].refs; }
  const KvBlockStats& stats() const { return stats_; }
  uint64_t block_bytes() const { return pool_.bucket_size(layout_.block_bytes()); }

 private:
  struct Meta {
    Buffer buffer;  // empty while free
    int32_t refs = 0;
    bool published = false;
    uint64_t hash = 0, parent = 0;
    std::vector<int32_t> tokens;  // published content, to check hits
    int32_t prev = -1, next = -1;  // LRU links while cached
  };
  int32_t new_id();
  void lru_push_back(int32_t id);
  void lru_remove(int32_t id);
  void unpublish(int32_t id);

  Pool& pool_;
  KvLayout layout_;
  std::vector<Meta> meta_;           // by id
  std::vector<int32_t> free_ids_;    // ids without memory
  std::unordered_map<uint64_t, int32_t> by_hash_;
  int32_t lru_head_ = -1, lru_tail_ = -1;  // cached blocks, least recently released first
  KvBlockStats stats_;
};

}  // namespace umi
