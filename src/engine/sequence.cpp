#include "engine/sequence.h"

#include <algorithm>

#include "core/error.h"
#include "core/units.h"

namespace umi {

void Sequence::run(std::span<const int32_t> tokens, const ForwardItem& last) {
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
  const int64_t chunk = model_.options().prefill_chunk;
  for (int64_t done = 0; done < n; done += chunk) {
    const int64_t m = std::min(chunk, n - done);
    ForwardItem item{&kv_, position_, tokens.subspan(static_cast<size_t>(done), static_cast<size_t>(m))};
    if (done + m == n) item.logits = last.logits, item.token = last.token, item.top = last.top, item.draw = last.draw;
    model_.forward(std::span<const ForwardItem>(&item, 1));
    position_ += m;
  }
}

std::vector<float> Sequence::feed(std::span<const int32_t> tokens) {
  std::vector<float> logits(static_cast<size_t>(model_.config().vocab_size));
  run(tokens, {.logits = logits.data()});
  return logits;
}

int32_t Sequence::feed_argmax(std::span<const int32_t> tokens) {
  int32_t token = 0;
  run(tokens, {.token = &token});
  return token;
}

void Sequence::feed_top_k(std::span<const int32_t> tokens, TopK& top) { run(tokens, {.top = &top}); }

void Sequence::feed_draw(std::span<const int32_t> tokens, TokenDraw& draw) { run(tokens, {.draw = &draw}); }

void Sequence::reset() {
  kv_.clear();
  position_ = 0;
}

}  // namespace umi
