#include "model/kv_cache.h"

#include "core/error.h"

namespace umi {

KvLayout KvLayout::for_model(const ModelConfig& c, DType dtype, int64_t block_tokens) {
  if (dtype != DType::F16 && dtype != DType::F32 && dtype != DType::Q8_0)
    throw InputError("KV cache dtype " + std::string(to_string(dtype)) + " is not supported (f16, f32, q8_0)");
  // q8_0 blocks must not straddle two heads: attention reads one head at a time.
  if (c.head_dim % dtype_info(dtype).block_elems != 0)
    throw InputError("KV cache dtype " + std::string(to_string(dtype)) + " needs head_dim (" + std::to_string(c.head_dim) +
                     ") to be a multiple of " + std::to_string(dtype_info(dtype).block_elems));
  if (block_tokens < 1 || block_tokens > 1024) throw InputError("KV block size must be 1..1024 tokens");
  return {block_tokens, c.n_layers, c.kv_dim(), dtype};
}

bool SequenceKv::reserve(int64_t tokens) {
  std::vector<int32_t> added;
  while (capacity() + static_cast<int64_t>(added.size()) * pool_->layout().block_tokens < tokens) {
    auto id = pool_->allocate();
    if (!id) {
      for (int32_t a : added) pool_->release(a);
      return false;
    }
    added.push_back(*id);
  }
  table_.insert(table_.end(), added.begin(), added.end());
  return true;
}

void SequenceKv::clear() {
  for (int32_t id : table_) pool_->release(id);
  table_.clear();
}

std::byte* SequenceKv::at(int64_t layer, int64_t position, int which) const {
  const KvLayout& l = pool_->layout();
  int64_t block = position / l.block_tokens, slot = position % l.block_tokens;
  std::byte* base = pool_->data(table_[static_cast<size_t>(block)]);
  size_t offset = static_cast<size_t>(layer) * l.layer_bytes() +
                  static_cast<size_t>(which * l.block_tokens + slot) * l.row_bytes();
  return base + offset;
}

}  // namespace umi
