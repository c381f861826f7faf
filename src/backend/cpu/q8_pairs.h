// One token's q8 activations laid out for the 512-bit row kernels of a
// single-token product (decode), which take two 32-value weight blocks per
// instruction. The per-block work of the 256-bit kernels (dot_x86.h) was a
// dozen instructions for 18 bytes of Q4_0: the row kernel ran at ~30 GB/s on
// two cores, half the machine's read bandwidth, and decode with it.
//
// Per pair of blocks, everything about the activations that every weight row
// reuses is worked out once, here, instead of once per row:
// - the 64 q of the two blocks, side by side;
// - for each int32 lane of vpdpbusd (4 consecutive bytes of that order), the
//   negated sum of its q: weights read as unsigned bytes (Q4_0 nibbles 0..15,
//   Q8_0 bytes + 128) over-count by offset * sum(q), and the kernel starts
//   each lane's integer sum at offset * that negated sum: exact;
// - each lane's block scale d.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cpu/dot.h"

namespace umi::cpu {

struct alignas(64) Q8Pair {
  int8_t q[64];
  int32_t neg_sum[16];
  float d[16];
};

// out[p] for the blocks 2p, 2p + 1 of x (blocks even).
void make_q8_pairs(const Q8Block* x, int64_t blocks, Q8Pair* out);

// row . x for a weight row of `pairs` pairs of blocks.
using QPairDotFn = float (*)(const std::byte* row, const Q8Pair* x, int64_t pairs);

// The chosen build's pair kernel for a weight type (nullptr: none; the
// AVX-512 VNNI build has Q4_0 and Q8_0).
QPairDotFn qpair_function(DType t);

}  // namespace umi::cpu
