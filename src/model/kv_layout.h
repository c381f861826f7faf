// The shape of one KV block: K and V of every layer for `block_tokens` tokens.
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/dtype.h"
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

}  // namespace umi
