#include "model/kv_block_pool.h"

#include <algorithm>

#include "core/error.h"

namespace umi {

uint64_t kv_block_hash(uint64_t parent, std::span<const int32_t> tokens) {
  // splitmix64 steps over the parent and each id: fast, well mixed; hits are
  // verified against the stored tokens, so a collision only costs a miss.
  auto mix = [](uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  uint64_t h = mix(parent + 0x9e3779b97f4a7c15ull);
  for (int32_t t : tokens) h = mix(h ^ (static_cast<uint64_t>(static_cast<uint32_t>(t)) + 0x9e3779b97f4a7c15ull));
  return h;
}

KvBlockPool::KvBlockPool(Pool& pool, KvLayout layout) : pool_(pool), layout_(layout) {}

KvBlockPool::~KvBlockPool() = default;

int32_t KvBlockPool::new_id() {
  if (!free_ids_.empty()) {
    int32_t id = free_ids_.back();
    free_ids_.pop_back();
    return id;
  }
  meta_.emplace_back();
  return static_cast<int32_t>(meta_.size() - 1);
}

std::optional<int32_t> KvBlockPool::allocate() {
  Buffer b = pool_.try_allocate(layout_.block_bytes(), MemoryUse::kv_cache);
  if (b) {
    int32_t id = new_id();
    Meta& m = meta_[static_cast<size_t>(id)];
    m.buffer = std::move(b);
    m.refs = 1;
    ++stats_.in_use;
    return id;
  }
  if (lru_head_ < 0) return std::nullopt;
  // The budget is spent: reuse the least recently released cached block.
  const int32_t id = lru_head_;
  lru_remove(id);
  unpublish(id);
  --stats_.cached;
  ++stats_.evictions;
  meta_[static_cast<size_t>(id)].refs = 1;
  ++stats_.in_use;
  return id;
}

void KvBlockPool::retain(int32_t id) {
  Meta& m = meta_.at(static_cast<size_t>(id));
  if (m.refs <= 0) throw Error("kv block " + std::to_string(id) + " retained while not in use");
  ++m.refs;
}

void KvBlockPool::release(int32_t id) {
  Meta& m = meta_.at(static_cast<size_t>(id));
  if (m.refs <= 0) throw Error("kv block " + std::to_string(id) + " released while not in use");
  if (--m.refs > 0) return;
  --stats_.in_use;
  if (m.published) {
    lru_push_back(id);
    ++stats_.cached;
    return;
  }
  m.buffer.reset();  // back to the pool
  free_ids_.push_back(id);
}

uint64_t KvBlockPool::publish(int32_t id, uint64_t parent, std::span<const int32_t> tokens) {
  Meta& m = meta_.at(static_cast<size_t>(id));
  const uint64_t h = kv_block_hash(parent, tokens);
  if (m.refs <= 0 || m.published) return m.published ? m.hash : h;
  if (by_hash_.count(h)) return h;  // someone else holds this content already
  m.published = true;
  m.hash = h;
  m.parent = parent;
  m.tokens.assign(tokens.begin(), tokens.end());
  by_hash_.emplace(h, id);
  return h;
}

std::optional<int32_t> KvBlockPool::find(uint64_t parent, std::span<const int32_t> tokens) {
  auto it = by_hash_.find(kv_block_hash(parent, tokens));
  if (it == by_hash_.end()) {
    ++stats_.misses;
    return std::nullopt;
  }
  const int32_t id = it->second;
  Meta& m = meta_[static_cast<size_t>(id)];
  if (m.parent != parent || !std::equal(tokens.begin(), tokens.end(), m.tokens.begin(), m.tokens.end())) {
    ++stats_.misses;
    return std::nullopt;
  }
  if (m.refs == 0) {  // cached: back in use
    lru_remove(id);
    --stats_.cached;
    ++stats_.in_use;
  }
  ++m.refs;
  ++stats_.hits;
  return id;
}

int64_t KvBlockPool::evict(int64_t blocks) {
  int64_t done = 0;
  while (done < blocks && lru_head_ >= 0) {
    const int32_t id = lru_head_;
    lru_remove(id);
    unpublish(id);
    meta_[static_cast<size_t>(id)].buffer.reset();
    free_ids_.push_back(id);
    --stats_.cached;
    ++stats_.evictions;
    ++done;
  }
  return done;
}

void KvBlockPool::unpublish(int32_t id) {
  Meta& m = meta_[static_cast<size_t>(id)];
  if (!m.published) return;
  by_hash_.erase(m.hash);
  m.published = false;
  m.tokens.clear();
}

void KvBlockPool::lru_push_back(int32_t id) {
  Meta& m = meta_[static_cast<size_t>(id)];
  m.prev = lru_tail_;
  m.next = -1;
  if (lru_tail_ >= 0) meta_[static_cast<size_t>(lru_tail_)].next = id;
  else lru_head_ = id;
  lru_tail_ = id;
}

void KvBlockPool::lru_remove(int32_t id) {
  Meta& m = meta_[static_cast<size_t>(id)];
  if (m.prev >= 0) meta_[static_cast<size_t>(m.prev)].next = m.next;
  else lru_head_ = m.next;
  if (m.next >= 0) meta_[static_cast<size_t>(m.next)].prev = m.prev;
  else lru_tail_ = m.prev;
  m.prev = m.next = -1;
}

}  // namespace umi
