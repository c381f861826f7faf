#include "backend/cpu/q8_pairs.h"

#include <cstring>

#include "core/error.h"

namespace umi::cpu {

namespace {
// Q4_0: four blocks a quad, in two pairs: lane l of both is block l / 4;
// the first pair's q are the values the low nibbles hold (4i..4i+3 of
// that block, i = l % 4), the second's those the high nibbles hold
// (16 + 4i..), the first pair's offset and d serve both (the second's are 0).
void q4_0_quads(const Q8Block* x, int64_t blocks, Q8Pair* out) {
  for (int64_t k = 0; k < blocks / 4; ++k) {
    Q8Pair& lo = out[2 * k];
    Q8Pair& hi = out[2 * k + 1];
    for (int l = 0; l < 16; ++l) {
      const Q8Block& b = x[4 * k + l / 4];
      const int i = l % 4;
      std::memcpy(lo.q + 4 * l, b.q + 4 * i, 4);
      std::memcpy(hi.q + 4 * l, b.q + 16 + 4 * i, 4);
      int32_t sum = 0;
      for (int j = 0; j < 4; ++j) sum += lo.q[4 * l + j] + hi.q[4 * l + j];
      lo.offset[l] = -8 * sum;
      lo.d[l] = b.d;
      hi.offset[l] = 0;
      hi.d[l] = 0;
    }
  }
}
}  // namespace

void make_q8_pairs(DType weights, const Q8Block* x, int64_t blocks, Q8Pair* out) {
  if (weights != DType::Q4_0 && weights != DType::Q8_0) throw Error("make_q8_pairs: no pair layout for this weight type");
  if (weights == DType::Q4_0) {
    if (blocks % 4 != 0) throw Error("make_q8_pairs: Q4_0 goes four blocks at a time");
    q4_0_quads(x, blocks, out);
    return;
  }
  // Q8_0: lane l is values 4(l/2).. of block l % 2, read as w + 128.
  for (int64_t p = 0; p < blocks / 2; ++p) {
    Q8Pair& o = out[p];
    for (int l = 0; l < 16; ++l) {
      const Q8Block& b = x[2 * p + l % 2];
      std::memcpy(o.q + 4 * l, b.q + 4 * (l / 2), 4);
      o.offset[l] = -128 * (o.q[4 * l] + o.q[4 * l + 1] + o.q[4 * l + 2] + o.q[4 * l + 3]);
      o.d[l] = b.d;
    }
  }
}

}  // namespace umi::cpu
