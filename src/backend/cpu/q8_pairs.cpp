#include "backend/cpu/q8_pairs.h"

#include <cstring>
#include <type_traits>

#include "core/error.h"

namespace umi::cpu {

namespace {
// Q4_0 and the formats that share its layout: sixteen blocks a group, four
// a quad; lane l of quad p is block 4p + l / 4: q_low the values the low
// nibbles hold (4i..4i+3 of that block, i = l % 4), q_high those the high
// nibbles hold (16 + 4i..). A last group holds the row's remaining quads; the
// rest of it is zeroed (the scratch is reused across products; whole groups
// are written in full). Group is Q4Group (offset: -Offset x the block's sum
// of q) or Q4MinGroup (d_sum: d x that sum).
template <class Group, int Offset>
void nibble_groups(const Q8Block* x, int64_t blocks, Group* out) {
  if (blocks % 16 != 0) std::memset(&out[blocks / 16], 0, sizeof(Group));
  for (int64_t q = 0; q < blocks / 4; ++q) {
    Group& g = out[q / 4];
    const int p = static_cast<int>(q % 4);
    for (int k = 0; k < 4; ++k) {  // block 4q + k: lanes 4k..4k + 3
      const Q8Block& b = x[4 * q + k];
      std::memcpy(g.quad[p].q_low + 16 * k, b.q, 16);
      std::memcpy(g.quad[p].q_high + 16 * k, b.q + 16, 16);
      int32_t sum = 0;
      for (int8_t v : b.q) sum += v;
      if constexpr (std::is_same_v<Group, Q4Group>) g.offset[4 * k + p] = -Offset * sum;
      else g.d_sum[4 * k + p] = b.d * static_cast<float>(sum);
      g.d[4 * k + p] = b.d;
    }
  }
}
}  // namespace

void make_q8k_blocks(DType weights, const float* x, int64_t n, Q8KBlock* out) {
  if (!is_k_quant(weights)) throw Error("make_q8k_blocks: not a K-quant weight type");
  quantize_activations_k(x, n, out);
  if (k_order(weights) == KOrder::natural) return;
  // Every order moves whole runs of 16 values (q8_pairs.h): 16 copies a
  // super-block on decode's serial path, not 256 single bytes.
  for (int64_t b = 0; b < n / 256; ++b) {
    int8_t in_order[256];
    std::memcpy(in_order, out[b].q, 256);
    for (int i = 0; i < 256; i += 16) std::memcpy(out[b].q + k_position(weights, i), in_order + i, 16);
  }
}

size_t pair_activation_bytes(DType t, int64_t cols) {
  const size_t n = static_cast<size_t>(cols);
  if (is_k_quant(t)) return n / 256 * sizeof(Q8KBlock);
  return is_nibble_group(t) ? (n / 32 + 15) / 16 * sizeof(Q4Group) : n / 64 * sizeof(Q8Pair);
}

void make_q8_pairs(DType weights, const Q8Block* x, int64_t blocks, void* out) {
  if (!is_nibble_group(weights) && weights != DType::Q8_0) throw Error("make_q8_pairs: no pair layout for this weight type");
  if (is_nibble_group(weights) && blocks % 4 != 0) throw Error("make_q8_pairs: the 4-bit formats go four blocks at a time");
  switch (weights) {
    case DType::Q4_0: return nibble_groups<Q4Group, 8>(x, blocks, static_cast<Q4Group*>(out));
    case DType::Q5_0: return nibble_groups<Q4Group, 16>(x, blocks, static_cast<Q4Group*>(out));
    case DType::IQ4_NL: return nibble_groups<Q4Group, 128>(x, blocks, static_cast<Q4Group*>(out));
    case DType::Q4_1:
    case DType::Q5_1: return nibble_groups<Q4MinGroup, 0>(x, blocks, static_cast<Q4MinGroup*>(out));
    default: break;
  }
  // Q8_0: lane l is values 4(l/2).. of block l % 2, read as w + 128.
  for (int64_t p = 0; p < blocks / 2; ++p) {
    Q8Pair& o = static_cast<Q8Pair*>(out)[p];
    for (int l = 0; l < 16; ++l) {
      const Q8Block& b = x[2 * p + l % 2];
      std::memcpy(o.q + 4 * l, b.q + 4 * (l / 2), 4);
      o.offset[l] = -128 * (o.q[4 * l] + o.q[4 * l + 1] + o.q[4 * l + 2] + o.q[4 * l + 3]);
      o.d[l] = b.d;
    }
  }
}

}  // namespace umi::cpu
