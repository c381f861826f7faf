#include "backend/top_k.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace umi {

void check_top_k_request(const TopK& t) {
  if (t.k < 1 || t.k > kMaxTopK || !(t.temperature > 0) || !std::isfinite(t.temperature))
    throw Error("top_k: k " + std::to_string(t.k) + " (1.." + std::to_string(kMaxTopK) + ") or temperature " +
                std::to_string(t.temperature) + " (finite, > 0) out of range");
}

// A heap of the k best so far (its front the worst of them): one pass over
// the row, no allocation.
int select_top_k(const float* row, int64_t n, float temperature, int k, Candidate* out) {
  if (k <= 0) return 0;
  int count = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(row[i])) continue;
    const Candidate c{row[i] / temperature, static_cast<int32_t>(i)};
    if (count < k) {
      out[count++] = c;
      std::push_heap(out, out + count, ranks_before);
    } else if (ranks_before(c, out[0])) {
      std::pop_heap(out, out + count, ranks_before);
      out[count - 1] = c;
      std::push_heap(out, out + count, ranks_before);
    }
  }
  std::sort_heap(out, out + count, ranks_before);
  return count;
}

}  // namespace umi
