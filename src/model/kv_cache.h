// The paged KV cache: fixed-size blocks of `block_tokens` tokens, each holding
// K and V for every layer, drawn from the accounted pool as a sequence grows
// and given back the moment it ends. Memory in use is proportional to the
// tokens held, never to the maximum context.
//
// Mechanism only: KvBlockPool (kv_block_pool.h) owns blocks behind integer
// ids; SequenceKv is one sequence's block table. Policy (who gets blocks,
// what waits) belongs to the scheduler.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "format/dtype.h"
#include "memory/pool.h"
#include "model/config.h"
#include "model/kv_block_pool.h"
#include "model/kv_layout.h"

namespace umi {

class SequenceKv {
 public:
  explicit SequenceKv(KvBlockPool& pool) : pool_(&pool) {}
  ~SequenceKv() { clear(); }
  SequenceKv(const SequenceKv&) = delete;
  SequenceKv& operator=(const SequenceKv&) = delete;

  // Makes room for `tokens` positions in total; false (nothing changed) if
  // the blocks cannot be had.
  bool reserve(int64_t tokens);
  // Appends a block found in the prefix cache (already retained for us).
  void append_shared(int32_t id) { table_.push_back(id); }
  void clear();  // gives every block back (shared ones stay with their other holders)

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
