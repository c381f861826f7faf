#include "backend/cpu/q8_pairs.h"

#include <cstring>

#include "core/error.h"

namespace umi::cpu {

void make_q8_pairs(DType weights, const Q8Block* x, int64_t blocks, Q8Pair* out) {
  if (weights != DType::Q4_0 && weights != DType::Q8_0) throw Error("make_q8_pairs: no pair layout for this weight type");
  const bool q4 = weights == DType::Q4_0;
  for (int64_t p = 0; p < blocks / 2; ++p) {
    const Q8Block& b0 = x[2 * p];
    const Q8Block& b1 = x[2 * p + 1];
    Q8Pair& o = out[p];
    std::memcpy(o.q, b0.q, 32);
    std::memcpy(o.q + 32, b1.q, 32);
    for (int l = 0; l < 16; ++l) {
      const bool high = q4 && l % 8 >= 4;  // Q4_0: values 16..31 of a block, read as byte & 0xF0
      const int32_t offset = q4 ? (high ? 128 : 8) : 128;
      o.offset[l] = -offset * (o.q[4 * l] + o.q[4 * l + 1] + o.q[4 * l + 2] + o.q[4 * l + 3]);
      const float d = l < 8 ? b0.d : b1.d;
      o.d[l] = high ? d / 16 : d;
    }
  }
}

}  // namespace umi::cpu
