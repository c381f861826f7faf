#include "backend/cpu/q8_pairs.h"

#include <cstring>

namespace umi::cpu {

void make_q8_pairs(const Q8Block* x, int64_t blocks, Q8Pair* out) {
  for (int64_t p = 0; p < blocks / 2; ++p) {
    const Q8Block& b0 = x[2 * p];
    const Q8Block& b1 = x[2 * p + 1];
    Q8Pair& o = out[p];
    std::memcpy(o.q, b0.q, 32);
    std::memcpy(o.q + 32, b1.q, 32);
    for (int l = 0; l < 16; ++l) {
      o.neg_sum[l] = -(o.q[4 * l] + o.q[4 * l + 1] + o.q[4 * l + 2] + o.q[4 * l + 3]);
      o.d[l] = l < 8 ? b0.d : b1.d;
    }
  }
}

}  // namespace umi::cpu
