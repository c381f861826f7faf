// The 512-bit single-token row kernels for Q4_0 and Q8_0 (contract and
// activation layout in q8_pairs.h), for dot_avx512vnni.cpp alone: two weight
// blocks per vpdpbusd. Per pair of Q4_0 blocks (36 bytes): two loads, shift,
// two inserts, a lane shuffle, and, the lane offsets, vpdpbusd, convert, the
// scales and two multiplies: ~7 instructions a block where the 256-bit kernel
// ran ~15. A first version took the pair in one masked 36-byte load and picked
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

// acc + a pair's float contribution: each lane's integer sum (started at the
// activations' offset correction) times its weight and activation scales.
inline __m512 add_pair(__m512 acc, __m512i sums, __m256i scales_f16, const Q8Pair& x) {
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(_mm512_cvtph_ps(scales_f16), _mm512_load_ps(x.d)), acc);
}

// Q4_0 pair (two 18-byte blocks: f16 d, 16 bytes of nibbles; value i < 16
// is the low nibble of byte i, value 16 + i its high one). Each block's 16
// bytes go to two 128-bit lanes by a broadcast load, and one mask keeps the
// low nibbles in the first and the high ones, in place, in the second (the
// activations' layout accounts for the factor 16): no shift, no lane shuffle.
inline __m512i q4_0_values(const std::byte* w) {
  const __m256i b0 = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2)));
  const __m256i b1 = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 20)));
  const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(b0), b1, 1);  // p0 p0 p1 p1
  const long long lo = 0x0F0F0F0F0F0F0F0FLL, hi = static_cast<long long>(0xF0F0F0F0F0F0F0F0ULL);
  return _mm512_and_si512(both, _mm512_set_epi64(hi, hi, lo, lo, hi, hi, lo, lo));  // 128-bit lanes: low, high, low, high
}

// The two blocks' f16 scales at byte 0 of each (`stride` apart), eight lanes each.
inline __m256i pair_scales(const std::byte* w, int stride) {
  uint16_t s0, s1;
  std::memcpy(&s0, w, 2);
  std::memcpy(&s1, w + stride, 2);
  return _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(s1)), _mm_set1_epi16(static_cast<short>(s0)));
}

inline __m512 q4_0_pair(__m512 acc, const std::byte* w, const Q8Pair& x) {
  const __m512i sums = _mm512_dpbusd_epi32(_mm512_load_si512(x.offset), q4_0_values(w), _mm512_load_si512(x.q));
  return add_pair(acc, sums, pair_scales(w, 18), x);
}

// Q8_0 pair (two 34-byte blocks: f16 d, 32 int8); the weights read as
// unsigned bytes w + 128.
inline __m512 q8_0_pair(__m512 acc, const std::byte* w, const Q8Pair& x) {
  const __m512i values = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2))),
                                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 36)), 1);
  const __m512i u = _mm512_xor_si512(values, _mm512_set1_epi8(static_cast<char>(0x80)));
  const __m512i sums = _mm512_dpbusd_epi32(_mm512_load_si512(x.offset), u, _mm512_load_si512(x.q));
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

// Two accumulators: consecutive pairs' adds do not wait on each other; the
// lines a page ahead of two pairs (72 or 136 bytes) prefetched as they go.
template <int PairBytes, __m512 (*Pair)(__m512, const std::byte*, const Q8Pair&)>
float pair_dot(const std::byte* row, const Q8Pair* x, int64_t pairs) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t p = 0;
  for (; p + 2 <= pairs; p += 2) {
    _mm_prefetch(reinterpret_cast<const char*>(row + p * PairBytes + kPrefetchAhead), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(row + p * PairBytes + kPrefetchAhead + 64), _MM_HINT_T0);
    if (PairBytes > 64) _mm_prefetch(reinterpret_cast<const char*>(row + p * PairBytes + kPrefetchAhead + 128), _MM_HINT_T0);
    a0 = Pair(a0, row + p * PairBytes, x[p]);
    a1 = Pair(a1, row + (p + 1) * PairBytes, x[p + 1]);
  }
  if (p < pairs) a0 = Pair(a0, row + p * PairBytes, x[p]);
  return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

QPairDotFn avx512_qpair(DType t) {
  switch (t) {
    case DType::Q4_0: return pair_dot<36, q4_0_pair>;
    case DType::Q8_0: return pair_dot<68, q8_0_pair>;
    default: return nullptr;
  }
}

}  // namespace
}  // namespace umi::cpu
