#include "engine/sequence.h"

#include <algorithm>

#include "core/error.h"
#include "core/units.h"

namespace umi {

std::vector<float> Sequence::feed(std::span<const int32_t> tokens) {
  const ModelConfig& c = model_.config();
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) throw InputError("no tokens to run");
  if (position_ + n > c.max_context)
    throw InputError(std::to_string(position_ + n) + " tokens are more than the model's context of " + std::to_string(c.max_context));
  if (!kv_.reserve(position_ + n)) {
    // Say how many would fit: blocks the budget still holds, beyond those we have.
    const KvLayout& layout = model_.kv_pool().layout();
    PoolStats s = model_.kv_pool().memory().stats();
    uint64_t block = model_.kv_pool().block_bytes();
    uint64_t free_bytes = s.limit > s.active ? s.limit - s.active : 0;
    int64_t fit = kv_.capacity() + static_cast<int64_t>(free_bytes / block) * layout.block_tokens - position_;
    throw OutOfMemory(std::to_string(n) + " tokens need " + format_bytes((static_cast<uint64_t>(n) / layout.block_tokens + 1) * block) +
                      " of KV cache; the memory limit leaves room for " + std::to_string(std::max<int64_t>(0, fit)) + " more tokens");
  }
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  const int64_t chunk = model_.options().prefill_chunk;
  for (int64_t done = 0; done < n; done += chunk) {
    int64_t m = std::min(chunk, n - done);
    bool last = done + m == n;
    model_.forward(tokens.subspan(static_cast<size_t>(done), static_cast<size_t>(m)), position_, kv_, last ? logits.data() : nullptr);
    position_ += m;
  }
  return logits;
}

void Sequence::reset() {
  kv_.clear();
  position_ = 0;
}

}  // namespace umi
