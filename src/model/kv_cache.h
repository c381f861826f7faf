// The paged KV cache: fixed-size blocks of `block_tokens` tokens, each holding
// K and V for every layer, drawn from the accounted pool as a sequence grows
// and given back the moment it ends. Memory in use is proportional to the
// tokens held, never to the maximum context.
//
// Mechanism only: KvBlockPool owns blocks behind integer ids with an O(1)
// free list of ids; SequenceKv is one sequence's block table. Policy (who
// gets blocks, what waits) belongs to the scheduler.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "format/dtype.h"
#include "memory/pool.h"
#include "model/config.h"

namespace umi {

struct KvLayout {
  int64_t block_tokens = 16;
  int64_t n_layers = 0;
  int64_t kv_dim = 0;
  DType dtype = DType::F16;  // f16, f32 or q8_0 (whole blocks per head)

  // One token's K (or V) for every KV head.
  size_t row_bytes() const { return dtype_bytes(dtype, static_cast<uint64_t>(kv_dim)).value_or(0); }
  // Within a block: layer l's K is [block_tokens, kv_dim], then its V.
  size_t layer_bytes() const { return 2 * static_cast<size_t>(block_tokens) * row_bytes(); }
  size_t block_bytes() const { return static_cast<size_t>(n_layers) * layer_bytes(); }
  static KvLayout for_model(const ModelConfig& c, DType dtype, int64_t block_tokens);
};

class KvBlockPool {
 public:
  KvBlockPool(Pool& pool, KvLayout layout);
  // A free block, or nullopt when the memory budget cannot hold another.
  std::optional<int32_t> allocate();
  void release(int32_t id);
  std::byte* data(int32_t id) const { return blocks_[static_cast<size_t>(id)].as<std::byte>(); }
  const KvLayout& layout() const { return layout_; }
  int64_t in_use() const { return in_use_; }

 private:
  Pool& pool_;
  KvLayout layout_;
  std::vector<Buffer> blocks_;    // by id; empty where released
  std::vector<int32_t> free_ids_; // ids whose slot is empty
  int64_t in_use_ = 0;
};

class SequenceKv {
 public:
  explicit SequenceKv(KvBlockPool& pool) : pool_(&pool) {}
  ~SequenceKv() { clear(); }
  SequenceKv(const SequenceKv&) = delete;
  SequenceKv& operator=(const SequenceKv&) = delete;

  // Makes room for `tokens` positions in total; false (nothing changed) if
  // the blocks cannot be had.
  bool reserve(int64_t tokens);
  void clear();  // gives every block back

  int64_t capacity() const { return static_cast<int64_t>(table_.size()) * pool_->layout().block_tokens; }
  const std::vector<int32_t>& block_table() const { return table_; }
  // Where K (or V) of `layer` at `position` lives.
  std::byte* k_at(int64_t layer, int64_t position) const { return at(layer, position, 0); }
  std::byte* v_at(int64_t layer, int64_t position) const { return at(layer, position, 1); }

 private:
  std::byte* at(int64_t layer, int64_t position, int which) const;
  KvBlockPool* pool_;
  std::vector<int32_t> table_;
};

}  // namespace umi
