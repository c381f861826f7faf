// One token's q8 activations laid out for the 512-bit row kernels of a
// single-token product (decode), which take two 32-value weight blocks per
// instruction. The per-block work of the 256-bit kernels (dot_x86.h) was a
// dozen instructions for 18 bytes of Q4_0: the row kernel ran at ~30 GB/s on
// two cores, half the machine's read bandwidth, and decode with it.
//
// Per pair of blocks, everything about the activations that every weight row
// reuses is worked out once, here, instead of once per row:
// - the 64 q of the two blocks in the kernels' lane order: int32 lane l of
//   vpdpbusd (bytes 4l..4l+3) takes four values of block l % 2 (Q8_0:
//   values 4(l/2)..; Q4_0: lanes 0-7 values 0..15, lanes 8-15 values 16..31);
// - for each lane, the
//   offset correction: weights read as unsigned bytes u over-count by
//   offset * sum(q), so the kernel starts each lane's integer sum at
//   -offset * sum(q) of its four q: exact. Q8_0 reads w + 128 (offset 128).
//   Q4_0 reads value i < 16 of a block as its byte's low nibble (offset 8)
//   and value 16 + i as the byte's high nibble in place, byte & 0xF0, which
//   is 16 times the nibble (offset 16 * 8): no shift in the kernel;
// - each lane's scale: the block's d, or d / 16 where the lane's weights
//   were read 16 times too large (exact: a power of two).
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cpu/dot.h"

namespace umi::cpu {

struct alignas(64) Q8Pair {
  int8_t q[64];
  int32_t offset[16];  // -offset * sum of the lane's q
  float d[16];
};

// out[p] for the blocks 2p, 2p + 1 of x (blocks even), laid out for weights
// of type `weights` (Q4_0 or Q8_0).
void make_q8_pairs(DType weights, const Q8Block* x, int64_t blocks, Q8Pair* out);

// y[r] = row r . x for `rows` consecutive weight rows `row_bytes` apart, each
// of `pairs` pairs of blocks.
using QPairDotFn = void (*)(const std::byte* rows_data, size_t row_bytes, int64_t rows, const Q8Pair* x, int64_t pairs, float* y);

// The chosen build's pair kernel for a weight type (nullptr: none; the
// AVX-512 VNNI build has Q4_0 and Q8_0).
QPairDotFn qpair_function(DType t);

}  // namespace umi::cpu
