#include "backend/cpu/q8_pairs.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace umi::cpu {

namespace {
// Q4_0: four blocks a quad, in two pairs: lane l of both is block l / 4;
// the first pair's q are the values the low nibbles hold (4i..4i+3 of
// that block, i = l % 4), the second's those the high nibbles hold
// (16 + 4i..), the first pair's offset and d (x 2^112) serve both (the
// second's are 0).
bool q4_0_quads(const Q8Block* x, int64_t blocks, Q8Pair* out) {
  for (int64_t k = 0; k < blocks / 4; ++k) {
    Q8Pair& lo = out[2 * k];
    Q8Pair& hi = out[2 * k + 1];
    for (int j = 0; j < 4; ++j) {  // block j: lanes 4j..4j + 3
      const Q8Block& b = x[4 * k + j];
      if (!(std::fabs(b.d) < 0x1p15f)) return false;
      std::memcpy(lo.q + 16 * j, b.q, 16);
      std::memcpy(hi.q + 16 * j, b.q + 16, 16);
      for (int i = 0; i < 4; ++i) lo.d[4 * j + i] = b.d * 0x1p112f;
    }
    for (int l = 0; l < 16; ++l) {
      int32_t sum = 0;
      for (int j = 0; j < 4; ++j) sum += lo.q[4 * l + j] + hi.q[4 * l + j];
      lo.offset[l] = -8 * sum;
    }
    std::memset(hi.offset, 0, sizeof hi.offset);
    std::memset(hi.d, 0, sizeof hi.d);
  }
  return true;
}
}  // namespace

size_t pair_activation_bytes(DType t, int64_t cols) {
  const size_t n = static_cast<size_t>(cols);
  return is_k_quant(t) ? n / 256 * sizeof(Q8KBlock) : n / 64 * sizeof(Q8Pair);
}

bool make_q8_pairs(DType weights, const Q8Block* x, int64_t blocks, Q8Pair* out) {
  if (weights != DType::Q4_0 && weights != DType::Q8_0) throw Error("make_q8_pairs: no pair layout for this weight type");
  if (weights == DType::Q4_0) {
    if (blocks % 4 != 0) throw Error("make_q8_pairs: Q4_0 goes four blocks at a time");
    return q4_0_quads(x, blocks, out);
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
  return true;
}

}  // namespace umi::cpu
