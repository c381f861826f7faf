#include "engine/logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace umi {

TokenLogprobs token_logprobs(std::span<const float> logits, int32_t token, int top) {
  const int64_t V = static_cast<int64_t>(logits.size());
  if (token < 0 || token >= V) throw InputError("logprobs: token " + std::to_string(token) + " is outside the vocabulary");
  if (top < 0) throw InputError("logprobs: top must be >= 0");
  // log-sum-exp in double around the maximum: exact enough for 128K entries.
  float mx = -std::numeric_limits<float>::infinity();
  for (float v : logits) mx = std::max(mx, v);
  double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - mx);
  const double lse = mx + std::log(sum);
  TokenLogprobs out;
  out.token = token;
  out.logprob = static_cast<float>(logits[static_cast<size_t>(token)] - lse);
  // The `top` largest with a min-heap of that size: O(V log top).
  const size_t k = static_cast<size_t>(std::min<int64_t>(top, V));
  auto better = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  std::vector<std::pair<float, int32_t>> heap;
  heap.reserve(k + 1);
  for (int32_t i = 0; i < V && k > 0; ++i) {
    std::pair<float, int32_t> e{logits[static_cast<size_t>(i)], i};
    if (heap.size() < k) {
      heap.push_back(e);
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (better(e, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = e;
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
  std::sort(heap.begin(), heap.end(), better);
  for (const auto& [v, id] : heap) out.top.emplace_back(id, static_cast<float>(v - lse));
  return out;
}

}  // namespace umi
