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
    for (int l = 0; l < 16; ++l) {
      // Lane l: four values of block l % 2, from value `first`; Q4_0's lanes
      // 8-15 hold values 16..31, read as byte & 0xF0.
      const Q8Block& b = l % 2 == 0 ? b0 : b1;
      const bool high = q4 && l >= 8;
      const int first = q4 ? (high ? 16 : 0) + 4 * ((l % 8) / 2) : 4 * (l / 2);
      std::memcpy(o.q + 4 * l, b.q + first, 4);
      const int32_t offset = q4 && !high ? 8 : 128;
      o.offset[l] = -offset * (o.q[4 * l] + o.q[4 * l + 1] + o.q[4 * l + 2] + o.q[4 * l + 3]);
      o.d[l] = high ? b.d / 16 : b.d;
    }
  }
}

}  // namespace umi::cpu
