// The 512-bit single-token row kernels for Q4_0 and Q8_0 (contract and
// activation layout in q8_pairs.h), for dot_avx512vnni.cpp alone: two weight
// blocks per vpdpbusd. Per pair of Q4_0 blocks (36 bytes): two loads, a
// dword permute, a mask, vpdpbusd from the lane offsets, convert, the scales
// (two broadcast loads, a blend, a conversion) and two multiplies: ~7
// instructions a block where the 256-bit kernel ran ~15; the loop runs ~4
// cycles a pair on this machine (in L1 or L2), bound by instruction
// throughput rather than by any one unit. A first version took the pair in one masked 36-byte load and picked
// the nibbles and scales out with word permutes (vpermw): slower than the
// 256-bit kernel on this machine (22 against 34 GB/s), as was vpermt2w for
// Q8_0; plain loads and inserts run at 55 (Q4_0) and 84 GB/s (Q8_0) on a
// 16384 x 4096 matrix in cache (umi_bench_kernels, session 11).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "backend/cpu/q8_pairs.h"

namespace umi::cpu {
namespace {

// A pair's activations in registers.
struct PairX {
  __m512i q, offset;
  __m512 d;
  explicit PairX(const Q8Pair& x)
      : q(_mm512_load_si512(x.q)), offset(_mm512_load_si512(x.offset)), d(_mm512_load_ps(x.d)) {}
};

// acc + a pair's float contribution: each lane's integer sum (started at the
// activations' offset correction) times its weight and activation scales.
inline __m512 add_pair(__m512 acc, __m512i sums, __m256i scales_f16, const PairX& x) {
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(_mm512_cvtph_ps(scales_f16), x.d), acc);
}

// Lanes alternate between the pair's blocks (q8_pairs.h): int32 lane l sums
// four weights of block l % 2. One two-source dword permute puts the blocks'
// bytes in that order, and the scales follow the same pattern: each block's
// f16 d sits in every other word after two 32-bit broadcast loads and one
// word blend. The first kernels placed block 0 in lanes 0-7 and block 1 in
// 8-15, whose scales took two word broadcasts and an insert: five shuffles a
// pair where this takes two or three; Zen's two shuffle pipes were the limit.

// f16 scales of the two blocks, alternating by word: s0 at w, s1 at w + stride.
inline __m256i pair_scales(const std::byte* w, int stride) {
  int32_t lo, hi;
  std::memcpy(&lo, w, 4);               // s0 in the low word
  std::memcpy(&hi, w + stride - 2, 4);  // s1 in the high word
  return _mm256_blend_epi16(_mm256_set1_epi32(lo), _mm256_set1_epi32(hi), 0xAA);
}

// Q4_0 pair (two 18-byte blocks: f16 d, 16 bytes of nibbles; value i < 16
// is the low nibble of byte i, value 16 + i its high one). Both blocks'
// bytes interleaved by dword fill each half of the register; the first half
// keeps the low nibbles, the second the high ones in place (16 times the
// nibble: the activations' layout accounts for it): no shift.
inline __m512i q4_0_values(const std::byte* w) {
  const __m512i b0 = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2)));
  const __m512i b1 = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 20)));
  const __m512i order = _mm512_set_epi32(19, 3, 18, 2, 17, 1, 16, 0, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i both = _mm512_permutex2var_epi32(b0, order, b1);
  const long long lo = 0x0F0F0F0F0F0F0F0FLL, hi = static_cast<long long>(0xF0F0F0F0F0F0F0F0ULL);
  return _mm512_and_si512(both, _mm512_set_epi64(hi, hi, hi, hi, lo, lo, lo, lo));
}

inline __m512 q4_0_pair(__m512 acc, const std::byte* w, const PairX& x) {
  const __m512i sums = _mm512_dpbusd_epi32(x.offset, q4_0_values(w), x.q);
  return add_pair(acc, sums, pair_scales(w, 18), x);
}

// Q8_0 pair (two 34-byte blocks: f16 d, 32 int8); the weights read as
// unsigned bytes w + 128.
inline __m512 q8_0_pair(__m512 acc, const std::byte* w, const PairX& x) {
  const __m512i b0 = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2)));
  const __m512i b1 = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 36)));
  const __m512i order = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i u = _mm512_xor_si512(_mm512_permutex2var_epi32(b0, order, b1), _mm512_set1_epi8(static_cast<char>(0x80)));
  const __m512i sums = _mm512_dpbusd_epi32(x.offset, u, x.q);
  return add_pair(acc, sums, pair_scales(w, 34), x);
}

// Weights come from a file mapping in 4 KB pages, and the hardware
// prefetchers stop at page boundaries: without help each page's first lines
// were a full memory latency, and the kernel streamed a 1.3 GB Q8_0 model at
// ~21 GB/s where a cached matrix ran at 84. A page ahead of the reads (the
// rows a thread takes are contiguous, so past a row's end is its next row):
// 1B-shaped Q4_0 decode 26.7 -> ~41 tok/s, Q8_0 16 -> ~21 (1K, 8K and 16K
// ahead measured no better, in a noisy VM).
constexpr int kPrefetchAhead = 4096;

// One row at a time, two accumulators: consecutive pairs' adds do not wait
// on each other; the lines a page ahead of two pairs (72 or 136 bytes)
// prefetched as they go. Rows two at a time, sharing each pair's activation
// loads, ran a little faster in cache but streamed from memory at two thirds
// of the speed (1B Q4_0 decode 56 -> 38 tok/s, session 12): two interleaved
// streams a core, 1 KB apart, defeat the prefetchers this kernel relies on.
template <int PairBytes, __m512 (*Pair)(__m512, const std::byte*, const PairX&)>
float one_row(const std::byte* row, const Q8Pair* x, int64_t pairs) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t p = 0;
  for (; p + 2 <= pairs; p += 2) {
    _mm_prefetch(reinterpret_cast<const char*>(row + p * PairBytes + kPrefetchAhead), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(row + p * PairBytes + kPrefetchAhead + 64), _MM_HINT_T0);
    if (PairBytes > 64) _mm_prefetch(reinterpret_cast<const char*>(row + p * PairBytes + kPrefetchAhead + 128), _MM_HINT_T0);
    a0 = Pair(a0, row + p * PairBytes, PairX(x[p]));
    a1 = Pair(a1, row + (p + 1) * PairBytes, PairX(x[p + 1]));
  }
  if (p < pairs) a0 = Pair(a0, row + p * PairBytes, PairX(x[p]));
  return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

template <int PairBytes, __m512 (*Pair)(__m512, const std::byte*, const PairX&)>
void pair_rows(const std::byte* rows_data, size_t row_bytes, int64_t rows, const Q8Pair* x, int64_t pairs, float* y) {
  for (int64_t r = 0; r < rows; ++r) y[r] = one_row<PairBytes, Pair>(rows_data + static_cast<size_t>(r) * row_bytes, x, pairs);
}

QPairDotFn avx512_qpair(DType t) {
  switch (t) {
    case DType::Q4_0: return pair_rows<36, q4_0_pair>;
    case DType::Q8_0: return pair_rows<68, q8_0_pair>;
    default: return nullptr;
  }
}

}  // namespace
}  // namespace umi::cpu
