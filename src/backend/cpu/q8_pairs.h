// One token's q8 activations laid out for the 512-bit row kernels of a
// single-token product (decode), which take two 32-value weight blocks per
// instruction. The per-block work of the 256-bit kernels (dot_x86.h) was a
// dozen instructions for 18 bytes of Q4_0: the row kernel ran at ~30 GB/s on
// two cores, half the machine's read bandwidth, and decode with it.
//
// Everything about the activations that every weight row reuses is worked
// out once, here, instead of once per row:
// - the q in the kernels' lane order (int32 lane l of vpdpbusd sums bytes
//   4l..4l+3 of its operands);
// - for each lane, the offset correction: weights read as unsigned bytes u
//   over-count by offset * sum(q), so the kernel starts each lane's integer
//   sum at -offset * sum(q) of its q: exact;
// - each lane's activation scale d.
//
// Q8_0, a pair a Q8Pair: lane l takes values 4(l/2)..4(l/2)+3 of block l % 2
// (the kernel interleaves the two blocks' weights by dword to match); the
// weights read as w + 128 (offset 128).
//
// Q4_0, sixteen blocks in a Q4Group of four Q4Quads: in quad p, lane l
// belongs to block 4p + l / 4 of the group. q_low are the values the low
// nibbles hold (4i..4i+3, i = l % 4: byte 4i..4i+3 of the block's 16 bytes
// of nibbles), q_high those the high nibbles hold (16 + 4i..); both multiply
// the same 64 bytes of nibbles, masked and shifted, into one accumulator.
// The kernel sums each block's four lanes in integers before it turns
// anything into floats, so the rest is one number a block, in the order that
// sum leaves them (index 4k + p: block 4p + k): the offset (nibbles read as
// 0..15 over-count by 8 x the block's sum of q) and d. Where a row's blocks
// are not a multiple of 16 its last group holds fewer quads; the ones past
// the row are zero, as are their offsets and d. A group's activations take
// 640 bytes, 1.25 a value: an 8192-wide product's 10 KB stay in L1 beside
// the streaming weights.
//
// History: a quad (four blocks) was the step until session 20, each lane with
// its own offset and d and the per-lane float work (weight scales by a byte
// shuffle and two integer operations, the activations' d x 2^112 to make up
// for their shortcut, a conversion, a multiply and a multiply-add) once a
// quad; summing the lanes first does that work, and loads one offset
// vector, once per sixteen blocks (q4_0_group, pair_dot_avx512.h).
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

struct alignas(64) Q4Quad {
  int8_t q_low[64], q_high[64];
};

struct alignas(64) Q4Group {
  Q4Quad quad[4];
  int32_t offset[16];  // [4k + p]: -8 (Q5_0: -16, IQ4_NL: -128) * the sum of block 4p + k's q
  float d[16];         // [4k + p]: block 4p + k's
};

// The other formats of 32 values with 4-bit quants take Q4_0's layout.
// Q5_0 (x = d (q - 16), q = nibble + 16 x its bit of qh) is Q4_0 with an
// offset of 16. Q4_1 and Q5_1 (x = d q + m) have no integer offset: their
// weights' m multiplies the activations' d x (the block's sum of q), which
// a Q4MinGroup carries, in the same order, where Q4Group has the offsets.
struct alignas(64) Q4MinGroup {
  Q4Quad quad[4];
  float d_sum[16];  // [4k + p]: d x the sum of block 4p + k's q
  float d[16];      // [4k + p]: block 4p + k's
};
static_assert(sizeof(Q4MinGroup) == sizeof(Q4Group));

// The formats that take a Q4Group (Q4_0, Q5_0, IQ4_NL) or a Q4MinGroup (Q4_1, Q5_1).
// IQ4_NL is Q4_0's layout with levels for nibbles; its kernel reads them as
// levels + 128 (offset -128 x the block's sum of q).
constexpr bool is_nibble_group(DType t) {
  return t == DType::Q4_0 || t == DType::Q5_0 || t == DType::Q4_1 || t == DType::Q5_1 || t == DType::IQ4_NL;
}

// The blocks of x laid out for weights of type `weights`: Q8_0 (blocks even)
// as Q8Pairs, Q4_0 and Q5_0 (blocks a multiple of 4) as Q4Groups, Q4_1 and
// Q5_1 as Q4MinGroups, at out
// (pair_activation_bytes of room, 64-byte aligned).
void make_q8_pairs(DType weights, const Q8Block* x, int64_t blocks, void* out);

// The K-quants' 256-value super-blocks take their activations
// as llama.cpp's q8_K does: one scale for all 256, not one per 32. The
// weights' sub-block scales then multiply integer sums (int16 products into
// int32 lanes, vpdpwssd), and one conversion and one multiply-add serve the
// whole super-block where a float per sub-block would take eight or sixteen.
// The sums of q per 32 serve Q4_K's mins (x = d sc q - dmin m), those per 16
// Q6_K's offset (x = d sc (q - 32), q read as unsigned 0..63); Q5_K as Q4_K.
struct alignas(64) Q8KBlock {
  int8_t q[256];  // value i at q[k_position(weights, i)]
  float d[16];    // the scale, in every lane: the kernels load it as a vector
  int16_t sum32[8];
  int16_t sum16[16];
};

// x (n floats, a multiple of 256) as Q8KBlocks: d = max|x| / 127 over the
// 256, q = x / d rounded to nearest, ties to even (as quantize_activations),
// in order (value i at q[i]).
void quantize_activations_k(const float* x, int64_t n, Q8KBlock* out);

// The K-quants (Q2_K..Q6_K) and IQ4_XS, whose super-blocks are 256
// values too: their pair kernels read Q8KBlocks.
constexpr bool is_k_quant(DType t) {
  return t == DType::Q2_K || t == DType::Q3_K || t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K || t == DType::IQ4_XS;
}

// Q4_K and Q5_K hold sub-blocks 2c and 2c + 1 (32 values each) in the low
// and high nibbles of the same 32 bytes. The 512-bit kernel reads 64 of
// those bytes at once, whose low nibbles are sub-blocks 2c and 2c + 2 and
// high ones 2c + 1 and 2c + 3; their activations hold every 128 values'
// sub-blocks in the order 0, 2, 1, 3 to match (in order, the kernel took
// two broadcast loads and two variable shifts per 128 values where it now
// takes one load and one shift: 10-20% slower in cache, session 18).
// Q6_K's kernels read the values in order. IQ4_XS keeps each 32-value
// sub-block's values 0-15 in the low nibbles of its 16 bytes and 16-31 in
// the high ones, so a 64-byte load of four sub-blocks' nibbles meets their
// values 0-15 side by side, then their values 16-31 (KOrder::nibble_quads).
enum class KOrder { natural, swapped, nibble_quads };
constexpr KOrder k_order(DType t) {
  return t == DType::Q4_K || t == DType::Q5_K ? KOrder::swapped : t == DType::IQ4_XS ? KOrder::nibble_quads : KOrder::natural;
}

// Where value i (0..255) of a super-block sits in the q of a Q8KBlock laid
// out for weights of type t.
constexpr int k_position(DType t, int i) {
  switch (k_order(t)) {
    case KOrder::swapped: {
      constexpr int kAt[4] = {0, 64, 32, 96};  // sub-block s % 4 of each 128 values
      return i / 128 * 128 + kAt[i / 32 % 4] + i % 32;
    }
    case KOrder::nibble_quads:  // sub-block s = i / 32: quad s / 4, then the value's half, then s % 4
      return i / 128 * 128 + i % 32 / 16 * 64 + i / 32 % 4 * 16 + i % 16;
    default: return i;
  }
}
static_assert(k_position(DType::Q4_K, 32) == 64 && k_position(DType::Q4_K, 64) == 32 && k_position(DType::Q4_K, 160) == 192);
// Each order keeps runs of 16 values together (make_q8k_blocks copies them so).
constexpr bool k_runs_of_16(DType t) {
  for (int i = 0; i < 256; ++i)
    if (k_position(t, i) != k_position(t, i / 16 * 16) + i % 16) return false;
  return true;
}
static_assert(k_runs_of_16(DType::Q4_K) && k_runs_of_16(DType::IQ4_XS));
static_assert(k_position(DType::IQ4_XS, 16) == 64 && k_position(DType::IQ4_XS, 32) == 16 && k_position(DType::IQ4_XS, 200) == 128 + 2 * 16 + 8 && k_position(DType::IQ4_XS, 216) == 128 + 64 + 2 * 16 + 8);

// x (n floats, a multiple of 256) as the Q8KBlocks the pair kernels of K-quant
// (or IQ4_XS) `weights` read: quantize_activations_k, then each value where k_position
// puts it (its sums stay by sub-block). The one way to make them, so that no caller forgets the order.
void make_q8k_blocks(DType weights, const float* x, int64_t n, Q8KBlock* out);

// Bytes of laid-out activations (Q8Pairs for Q8_0, Q4Groups or Q4MinGroups
// for the nibble formats, Q8KBlocks for the K-quants) `cols` values take for weights of type t.
size_t pair_activation_bytes(DType t, int64_t cols);

// y[r] = row r . x for `rows` consecutive weight rows `row_bytes` apart, each
// of `pairs` pairs of 32-value blocks (the nibble formats: pairs even;
// K-quants: a multiple of 4); x the activations in the weight type's layout
// above (Q8Pairs, Q4Groups, Q4MinGroups or Q8KBlocks).
using QPairDotFn = void (*)(const std::byte* rows_data, size_t row_bytes, int64_t rows, const void* x, int64_t pairs, float* y);

// The chosen build's pair kernel for a weight type (nullptr: none; the
// AVX-512 VNNI build has every quantized type, AVX2 every one but Q8_0).
QPairDotFn qpair_function(DType t);

}  // namespace umi::cpu
