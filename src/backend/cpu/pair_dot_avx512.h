// The 512-bit single-token row kernels for every quantized format (contract and
// activation layout in q8_pairs.h), for dot_avx512vnni.cpp alone: 64 weights
// per vpdpbusd. Q8_0 takes two blocks at a time: two loads, a dword permute,
// vpdpbusd from the lane offsets, convert, the scales (two broadcast loads, a
// blend, a conversion) and two multiplies, ~4 cycles a pair in cache, bound
// by instruction throughput rather than by any one unit (from memory it is
// bandwidth-bound). Q4_0 takes sixteen blocks (below). History: a first version
// took a pair in one masked 36-byte load and picked nibbles and scales out
// with word permutes: slower than the 256-bit row kernels (22 against 34
// GB/s); plain loads ran at 55 (Q4_0) and 84 GB/s (Q8_0) on a 16384 x 4096
// matrix in cache (umi_bench_kernels, session 11).
#pragma once

#include <immintrin.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "backend/cpu/pair_x86.h"
#include "backend/cpu/q8_pairs.h"
#include "backend/cpu/quant_blocks.h"

namespace umi::cpu {
namespace {

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

// Q4_0 goes sixteen blocks (288 bytes, a Q4Group of activations) at a
// time, as four quads of four blocks. A quad's four blocks' 16 bytes of
// nibbles sit side by side in one register, low nibbles against the quad's
// q_low and high nibbles against its q_high, two vpdpbusd into one
// accumulator: each int32 lane sums eight weights of one block (block
// l / 4). The nibbles come out of a 64-byte load at w and a 16-byte one at
// w + 56 (the quad's 72 bytes, not one past) by one word permute. A second
// 64-byte load at w + 8 instead of the 16-byte one ran as fast in cache and
// at half the speed from memory (two line-splitting loads a quad, session
// 12).
inline __m512i q4_0_quad_sums(const std::byte* w, const Q4Quad* x) {
  const __m512i z0 = _mm512_loadu_si512(w);  // words 0..31 of the quad
  const __m512i z1 = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 56)));  // words 28..35
  // Block j's nibbles are words 9j + 1 .. 9j + 8; words 32..35 come from z1 (index 32 + word - 28).
  const __m512i nibble_words = _mm512_set_epi16(39, 38, 37, 36, 31, 30, 29, 28, 26, 25, 24, 23, 22, 21, 20, 19,
                                                17, 16, 15, 14, 13, 12, 11, 10, 8, 7, 6, 5, 4, 3, 2, 1);
  const __m512i packed = _mm512_permutex2var_epi16(z0, nibble_words, z1);
  const __m512i mask = _mm512_set1_epi8(0x0F);
  const __m512i low = _mm512_and_si512(packed, mask), high = _mm512_and_si512(_mm512_srli_epi16(packed, 4), mask);
  return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), low, _mm512_load_si512(x->q_low)), high,
                             _mm512_load_si512(x->q_high));
}

// A group's four quad sums (quad p's lanes 4k..4k + 3: its block k) summed
// per block: lane 4k + p holds block 4p + k (two rounds of unpack-and-add:
// dword pairs, then qword pairs, within each 128-bit lane k).
inline __m512i group_block_sums(const __m512i s[4]) {
  const __m512i s01 = _mm512_add_epi32(_mm512_unpacklo_epi32(s[0], s[1]), _mm512_unpackhi_epi32(s[0], s[1]));
  const __m512i s23 = _mm512_add_epi32(_mm512_unpacklo_epi32(s[2], s[3]), _mm512_unpackhi_epi32(s[2], s[3]));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
}

// The group: the quads' lanes summed per block in integers (group_block_sums)
// plus the blocks' offsets (one
// load where per-lane offsets took one a quad), the blocks' f16 d gathered into
// the same order by two word permutes (word 9k of quad p's first 64 bytes)
// and a blend, then one conversion of each and one multiply-add for all
// sixteen. Quads past `Quads` are zero and read nothing (a row's last,
// partial group). The quad kernel did the float work per quad with each
// lane's own offset and d: in the microbenchmark of session 20 (1 GB of
// random rows, two threads, medians of 11 interleaved rounds) this ran in
// cache at 114 GB/s against 107, from memory at 67 against 60 while the VM
// read at 80 (with per-lane offsets still, 107 and 65). GCC 12 keeps step a
// call per group (its constants reloaded each time); forced inline, the row
// loop hoisted them (~59 instructions a group, not ~65) and a 768-row matrix
// in cache ran 5% faster, but the 1B decode while the VM read 31-37 GB/s fell
// from 0.894-0.914 to 0.839-0.886 of the roofline (0.875-0.886 but for one
// round) in seven alternating pairs (session 21): left as the compiler chooses.
struct Q4_0Group512 {
  using Acc = __m512;
  using Act = Q4Group;
  static constexpr int kBytes = 288;
  template <int Quads>
  static __m512 step(__m512 acc, const std::byte* w, const Q4Group* x) {
    __m512i s[4], z[4];
    for (int p = 0; p < 4; ++p) {
      s[p] = p < Quads ? q4_0_quad_sums(w + 72 * p, &x->quad[p]) : _mm512_setzero_si512();
      z[p] = p < Quads ? _mm512_loadu_si512(w + 72 * p) : _mm512_setzero_si512();
    }
    const __m512i sums = _mm512_add_epi32(group_block_sums(s), _mm512_load_si512(x->offset));
    // Word 4k + p: word 9k of quad p (quads 0, 1 from the first permute, 2, 3 from the second).
    const __m512i d_words = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                             59, 27, 59, 27, 50, 18, 50, 18, 41, 9, 41, 9, 32, 0, 32, 0);
    const __m512i d01 = _mm512_permutex2var_epi16(z[0], d_words, z[1]), d23 = _mm512_permutex2var_epi16(z[2], d_words, z[3]);
    const __m512 d = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_mask_blend_epi16(0xCCCC, d01, d23)));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(d, _mm512_load_ps(x->d)), acc);
  }
  static float sum(__m512 a0, __m512 a1) { return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)); }
};

// Q5_0, Q4_1, Q5_1 and IQ4_NL go as Q4_0 does, sixteen blocks a group, in their
// own block layout (NibbleFormat, pair_x86.h). A quad (80-96 bytes) comes
// in a 64-byte load at w and a 32-byte one ending where the quad does; one
// word permute of the two gathers the four blocks' nibbles, a second their
// d and m. A third puts the fifth bits in order for two 64-bit masks (bit
// 16k + j: block k's byte j; the low nibbles' bits are qh's 0-15, the high
// ones' 16-31) that add 16 where set.
template <class F>
struct NibbleIndex {
  // Word w of a quad (w < 32: the first load; above, the second one).
  static constexpr int16_t source(int w) { return static_cast<int16_t>(w < 32 ? w : 32 + w - (4 * F::kBytes - 32) / 2); }
  static_assert(F::kNibbles + 14 < F::kBytes, "the last block's nibbles lie in the second load");
  // Word 8k + i: word i of block k's nibbles.
  static constexpr std::array<int16_t, 32> nibbles() {
    std::array<int16_t, 32> a{};
    for (int j = 0; j < 32; ++j) a[static_cast<size_t>(j)] = source((F::kBytes * (j / 8) + F::kNibbles) / 2 + j % 8);
    return a;
  }
  // Word 4k + p: block k's d; 16 + 4k + p: its m (the others: anything).
  static constexpr std::array<int16_t, 32> scales(int p) {
    std::array<int16_t, 32> a{};
    for (int k = 0; k < 4; ++k) {
      a[static_cast<size_t>(4 * k + p)] = source(F::kBytes * k / 2);
      a[static_cast<size_t>(16 + 4 * k + p)] = source(F::kBytes * k / 2 + 1);
    }
    return a;
  }
  // Words 0-3: blocks 0-3's low 16 fifth bits; 4-7: their high ones.
  static constexpr std::array<int16_t, 32> fifth_bits() {
    std::array<int16_t, 32> a{};
    for (int k = 0; k < 4; ++k)
      for (int h = 0; h < 2; ++h) a[static_cast<size_t>(4 * h + k)] = source((F::kBytes * k + F::kHigh) / 2 + h);
    return a;
  }
  alignas(64) static constexpr std::array<int16_t, 32> kNibbleWords = nibbles();
  alignas(64) static constexpr std::array<int16_t, 32> kFifthBitWords = fifth_bits();
  alignas(64) static constexpr std::array<std::array<int16_t, 32>, 4> kScaleWords = {scales(0), scales(1), scales(2), scales(3)};
};

template <class F>
struct NibbleGroup512 {
  using Acc = __m512;
  using Act = typename F::Act;
  static constexpr int kBytes = F::kGroupBytes;
  template <int Quads>
  static __m512 step(__m512 acc, const std::byte* w, const Act* x) {
    using Index = NibbleIndex<F>;
    const __m512i nibble_words = _mm512_load_si512(Index::kNibbleWords.data());
    const __m512i mask = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(16);
    __m512i s[4], scales = _mm512_setzero_si512();
    for (int p = 0; p < 4; ++p) {
      if (p >= Quads) {
        s[p] = _mm512_setzero_si512();
        continue;
      }
      const std::byte* q = w + 4 * F::kBytes * p;
      const __m512i z0 = _mm512_loadu_si512(q);
      const __m512i z1 = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 4 * F::kBytes - 32)));
      const __m512i packed = _mm512_permutex2var_epi16(z0, nibble_words, z1);
      __m512i low = _mm512_and_si512(packed, mask), high = _mm512_and_si512(_mm512_srli_epi16(packed, 4), mask);
      if constexpr (F::kLevels) {
        const __m512i table = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(kIq4Unsigned.level)));
        low = _mm512_shuffle_epi8(table, low), high = _mm512_shuffle_epi8(table, high);
      }
      if constexpr (F::kHigh >= 0) {
        const __m128i bits = _mm512_castsi512_si128(_mm512_permutex2var_epi16(z0, _mm512_load_si512(Index::kFifthBitWords.data()), z1));
        low = _mm512_mask_add_epi8(low, static_cast<__mmask64>(_mm_cvtsi128_si64(bits)), low, sixteen);
        high = _mm512_mask_add_epi8(high, static_cast<__mmask64>(_mm_extract_epi64(bits, 1)), high, sixteen);
      }
      s[p] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), low, _mm512_load_si512(x->quad[p].q_low)), high,
                                 _mm512_load_si512(x->quad[p].q_high));
      const __m512i t = _mm512_permutex2var_epi16(z0, _mm512_load_si512(Index::kScaleWords[static_cast<size_t>(p)].data()), z1);
      scales = p == 0 ? t : _mm512_mask_blend_epi16(0x11111111u << p, scales, t);
    }
    __m512i sums = group_block_sums(s);
    if constexpr (!F::kMin) sums = _mm512_add_epi32(sums, _mm512_load_si512(x->offset));
    const __m512 d = _mm512_cvtph_ps(_mm512_castsi512_si256(scales));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(d, _mm512_load_ps(x->d)), acc);
    if constexpr (F::kMin) acc = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(scales, 1)), _mm512_load_ps(x->d_sum), acc);
    return acc;
  }
  static float sum(__m512 a0, __m512 a1) { return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)); }
};

// Q8_0 pair (two 34-byte blocks: f16 d, 32 int8); the weights read as
// unsigned bytes w + 128.
inline __m512 q8_0_pair(__m512 acc, const std::byte* w, const Q8Pair* x) {
  const __m512i b0 = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2)));
  const __m512i b1 = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 36)));
  const __m512i order = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i u = _mm512_xor_si512(_mm512_permutex2var_epi32(b0, order, b1), _mm512_set1_epi8(static_cast<char>(0x80)));
  const __m512i sums = _mm512_dpbusd_epi32(_mm512_load_si512(x->offset), u, _mm512_load_si512(x->q));
  const __m512 scales = _mm512_mul_ps(_mm512_cvtph_ps(pair_scales(w, 34)), _mm512_load_ps(x->d));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scales, acc);
}


// One row at a time, a step (Q8_0: a pair of blocks, 68 bytes) after
// another, two accumulators: consecutive steps' adds do not wait on each
// other; prefetching as pair_x86.h says, once every two steps. Rows two at a
// time, sharing each pair's activation loads, ran a little faster in cache
// but streamed from memory at two thirds of the speed (1B Q4_0 decode 56 ->
// 38 tok/s, session 12): two interleaved streams a core, 1 KB apart, defeat
// the prefetchers this kernel relies on.
template <int StepBytes, class Act, __m512 (*Step)(__m512, const std::byte*, const Act*), Prefetch Pf>
float one_row(const std::byte* row, const Act* x, int64_t steps) {
  __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
  int64_t s = 0;
  for (; s + 2 <= steps; s += 2) {
    prefetch_ahead<Pf>(row + s * StepBytes, 2 * StepBytes);
    a0 = Step(a0, row + s * StepBytes, x + s);
    a1 = Step(a1, row + (s + 1) * StepBytes, x + s + 1);
  }
  if (s < steps) a0 = Step(a0, row + s * StepBytes, x + s);
  return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

// Steps of one pair of blocks (StepBytes of weights), one Act each.
template <int StepBytes, class Act, __m512 (*Step)(__m512, const std::byte*, const Act*), Prefetch Pf>
void pair_rows(const std::byte* rows_data, size_t row_bytes, int64_t rows, const void* xv, int64_t pairs, float* y) {
  const Act* x = static_cast<const Act*>(xv);
  for (int64_t r = 0; r < rows; ++r)
    y[r] = one_row<StepBytes, Act, Step, Pf>(rows_data + static_cast<size_t>(r) * row_bytes, x, pairs);
}

// The K-quants, a super-block against one Q8KBlock (q8_pairs.h) at a time,
// as four vectors of 64 weights (two 32-value sub-blocks each, in the
// activations' order) read as unsigned bytes: vpmaddubsw multiplies them with
// the activations into int16 pairs (at most 2 x 63 x 127: no saturation),
// vpdpwssd multiplies those by the sub-blocks' scales as int16 words into
// one int32 sum per lane; one conversion and one multiply-add by d x the
// activations' scale for the super-block.

// Words of lanes 0, 1 = byte a of the source lane, of lanes 2, 3 byte b
// (zero-extended): a vpshufb control.
inline __m512i bytes_to_words(int a, int b) {
  const int wa = static_cast<int>((0x8000u | static_cast<uint32_t>(a)) * 0x10001u),
            wb = static_cast<int>((0x8000u | static_cast<uint32_t>(b)) * 0x10001u);
  return _mm512_set_epi32(wb, wb, wb, wb, wb, wb, wb, wb, wa, wa, wa, wa, wa, wa, wa, wa);
}

// Q4_K (144 bytes: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins, 128
// of nibbles; quant_blocks.h) and Q5_K (176: the same with 32 bytes of 5th
// bits before the nibbles), a 128-value half h at a time: one 64-byte load
// of its nibbles holds sub-blocks 4h and 4h + 2 in the low nibbles, 4h + 1
// and 4h + 3 in the high ones, against activations in that order
// (k_position, q8_pairs.h). The mins: dmin x the activations' scale x sum
// over s of m[s] x (sub-block s's sum of q), a 128-bit accumulator
// subtracted at the end. The sub-blocks' scales become words by one in-lane
// byte shuffle per vector. Q5_K's bit s of qh[l], the 5th bit of value l
// of sub-block s, adds 16 where a byte test against the half's two
// sub-blocks' bits finds it.
inline __m512i add_fifth_bit(__m512i u, __m512i qh, int low_half, int high_half) {
  const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << low_half)), _mm256_set1_epi8(static_cast<char>(1 << high_half)), 1);
  return _mm512_mask_add_epi8(u, _mm512_test_epi8_mask(qh, bit), u, _mm512_set1_epi8(16));
}

template <bool FiveBit>
inline void q45_k_block(__m512& acc, __m128& acc_min, const std::byte* w, const Q8KBlock& a) {
  const __m128i scales = unpack_k_scales(w + 4);  // bytes: sc[0..7], m[0..7]
  const __m512i scales4 = _mm512_broadcast_i32x4(scales);
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const std::byte* qs = w + (FiveBit ? 48 : 16);
  __m512i qh = _mm512_setzero_si512();
  if constexpr (FiveBit) qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16)));
  __m512i sums = _mm512_setzero_si512();
  for (int h = 0; h < 2; ++h) {
    const int s = 4 * h;  // sub-blocks s, s + 2 (low nibbles), s + 1, s + 3 (high)
    const __m512i packed = _mm512_loadu_si512(qs + 64 * h);
    __m512i low = _mm512_and_si512(packed, low4), high = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low4);
    if constexpr (FiveBit) low = add_fifth_bit(low, qh, s, s + 2), high = add_fifth_bit(high, qh, s + 1, s + 3);
    const int8_t* q = a.q + k_position(DType::Q4_K, 32 * s);  // sub-block s, then s + 2, s + 1, s + 3
    sums = _mm512_dpwssd_epi32(sums, _mm512_maddubs_epi16(low, _mm512_load_si512(q)), _mm512_shuffle_epi8(scales4, bytes_to_words(s, s + 2)));
    sums = _mm512_dpwssd_epi32(sums, _mm512_maddubs_epi16(high, _mm512_load_si512(q + 64)),
                               _mm512_shuffle_epi8(scales4, bytes_to_words(s + 1, s + 3)));
  }
  const __m128 d = k_d_dmin(w);  // d, dmin
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(_mm512_broadcastss_ps(d), _mm512_load_ps(a.d)), acc);
  acc_min = add_k_mins(acc_min, scales, d, a);
}

// Words 0-7 = word j of the source, 8-15 word j + 1, ...: a vpermw index
// for four scales of 16 values, one per 128-bit lane.
inline __m512i lane_words(int j) {
  const int w0 = j * 0x10001, w1 = (j + 1) * 0x10001, w2 = (j + 2) * 0x10001, w3 = (j + 3) * 0x10001;  // two words of j, ...
  return _mm512_set_epi32(w3, w3, w3, w3, w2, w2, w2, w2, w1, w1, w1, w1, w0, w0, w0, w0);
}

// Q6_K (210 bytes: 128 of low nibbles, 64 of 2-bit high parts, 16 int8
// scales, f16 d; quant_blocks.h), a 128-value half at a time: the low
// nibbles of its 64 ql bytes are values 0-63, the high ones 64-127; value l
// + 32g takes bits 2g, 2g + 1 of qh[l], moved to bits 4, 5 by word shifts
// that differ between the vector's halves (left 4 and 2, right 0 and 2).
// q is read as 0..63, and 32 x sum over j of scale[j] x (the activations'
// sum of q over those 16 values) is subtracted in the same integer sum.
inline void q6_k_block(__m512& acc, __m128&, const std::byte* w, const Q8KBlock& a) {
  const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 192)));
  const __m512i scales = _mm512_castsi256_si512(sc16);  // vpermw reads words 0-15 only
  const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30);
  const __m512i left = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
  const __m512i right = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
  __m512i sums = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(_mm256_mullo_epi16(sc16, _mm256_set1_epi16(-32))),
                                     _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.sum16))));
  for (int h = 0; h < 2; ++h) {
    const __m512i ql = _mm512_loadu_si512(w + 64 * h);
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 128 + 32 * h)));
    const __m512i lo = _mm512_or_si512(_mm512_and_si512(ql, low4), _mm512_and_si512(_mm512_sllv_epi16(qh, left), bits45));
    const __m512i hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), low4), _mm512_and_si512(_mm512_srlv_epi16(qh, right), bits45));
    sums = _mm512_dpwssd_epi32(sums, _mm512_maddubs_epi16(lo, _mm512_load_si512(a.q + 128 * h)), _mm512_permutexvar_epi16(lane_words(8 * h), scales));
    sums = _mm512_dpwssd_epi32(sums, _mm512_maddubs_epi16(hi, _mm512_load_si512(a.q + 128 * h + 64)),
                               _mm512_permutexvar_epi16(lane_words(8 * h + 4), scales));
  }
  const __m512 d = _mm512_cvtph_ps(_mm256_set1_epi16(static_cast<int16_t>(load_le16(w + 208))));
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(d, _mm512_load_ps(a.d)), acc);
}

// Q3_K (110 bytes: hmask[32], qs[64], 12 bytes of 6-bit scales, f16 d) and
// Q2_K (84: 16 bytes of 4-bit scales and mins, qs[64], f16 d, f16 dmin;
// quant_blocks.h) against a Q8KBlock in order, 64 values at a time: values
// 128h + 64c + 32j' + l (j = 2c + j') take bits 2j of qs[32h + l], so one
// 32-byte load in both halves of a vector, a shift by 2j per half and a
// mask give them; Q3_K adds 4 where bit 4h + j of hmask[l] is set (q + 4,
// 0..7: its -4 comes off as 4 x the sum over 16-value groups g of sc_g x
// their sum of q). Then as Q6_K: vpmaddubsw into int16 pairs, vpdpwssd by
// each 128-bit lane's scale word. The scales, Q3_K's offset and Q2_K's
// mins come from two_bit_k_head (pair_x86.h), as in the 256-bit kernel.
template <bool Q3>
inline __m512i two_bit_values(const std::byte* w, int h, int c) {
  const std::byte* qs = w + (Q3 ? 32 : 16) + 32 * h;
  const __m512i shift = _mm512_inserti64x4(_mm512_set1_epi16(static_cast<int16_t>(4 * c)), _mm256_set1_epi16(static_cast<int16_t>(4 * c + 2)), 1);
  const __m512i bits = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs)));
  __m512i u = _mm512_and_si512(_mm512_srlv_epi16(bits, shift), _mm512_set1_epi8(3));
  if constexpr (Q3) {
    const int j = 4 * h + 2 * c;  // hmask bits j (this vector's low half) and j + 1
    const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << j)), _mm256_set1_epi8(static_cast<char>(1 << (j + 1))), 1);
    const __m512i hmask = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)));
    u = _mm512_mask_add_epi8(u, _mm512_test_epi8_mask(hmask, bit), u, _mm512_set1_epi8(4));
  }
  return u;
}

template <bool Q3>
inline void two_bit_k_block(__m512& acc, __m128& acc_min, const std::byte* w, const Q8KBlock& a) {
  const TwoBitHead head = two_bit_k_head<Q3>(acc_min, w, a);
  __m512i sums = _mm512_zextsi256_si512(head.sums);
  const __m512i scales = _mm512_castsi256_si512(head.sc16);  // vpermw reads words 0-15 only
  for (int h = 0; h < 2; ++h)
    for (int c = 0; c < 2; ++c)
      sums = _mm512_dpwssd_epi32(sums, _mm512_maddubs_epi16(two_bit_values<Q3>(w, h, c), _mm512_load_si512(a.q + 128 * h + 64 * c)),
                                 _mm512_permutexvar_epi16(lane_words(8 * h + 4 * c), scales));
  const __m512 d = _mm512_set1_ps(_cvtsh_ss(load_le16(w + (Q3 ? 108 : 80))));
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(d, _mm512_load_ps(a.d)), acc);
}

// IQ4_XS (136 bytes: f16 d, u16 scales_h, 4 bytes of scales_l, 128 of
// nibbles; quant_blocks.h) against a Q8KBlock in nibble-quad order
// (k_position, q8_pairs.h): a 64-byte load holds four sub-blocks' nibbles;
// one byte shuffle each turns the low and the high nibbles into their
// levels + 128 (unsigned, as vpdpbusd wants: lanes 4k..4k + 3 sum
// sub-block k of the quad), and one 32-bit multiply gives each lane its
// sub-block's integer scale ls - 32. The +128 comes off as 128 x the sum
// over s of (ls_s - 32) x (sub-block s's sum of q); one conversion and one
// multiply-add by d x the activations' scale a block. The eight 6-bit
// scales come out of the block's first 8 bytes by two bit deposits (BMI2,
// which every AVX-512 CPU has).
inline void iq4_xs_block(__m512& acc, __m128&, const std::byte* w, const Q8KBlock& a) {
  uint64_t head;  // d, scales_h, scales_l
  std::memcpy(&head, w, 8);
  const uint64_t ls = _pdep_u64(head >> 32, 0x0F0F0F0F0F0F0F0Full) | _pdep_u64(head >> 16, 0x3030303030303030ull);  // byte s: ls_s
  const __m256i scale = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(ls))), _mm256_set1_epi32(32));
  const __m512i table = _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(kIq4Unsigned.level)));
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  __m512i sum = _mm512_setzero_si512();
  for (int h = 0; h < 2; ++h) {  // sub-blocks 4h..4h + 3
    const __m512i packed = _mm512_loadu_si512(w + 8 + 64 * h);
    const __m512i lo = _mm512_shuffle_epi8(table, _mm512_and_si512(packed, low4));
    const __m512i hi = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(packed, 4), low4));
    const __m512i dots = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_load_si512(a.q + 128 * h)), hi,
                                             _mm512_load_si512(a.q + 128 * h + 64));
    const __m512i lane_scale = _mm512_permutexvar_epi32(
        _mm512_set_epi32(4 * h + 3, 4 * h + 3, 4 * h + 3, 4 * h + 3, 4 * h + 2, 4 * h + 2, 4 * h + 2, 4 * h + 2, 4 * h + 1, 4 * h + 1,
                         4 * h + 1, 4 * h + 1, 4 * h, 4 * h, 4 * h, 4 * h),
        _mm512_castsi256_si512(scale));
    sum = _mm512_add_epi32(sum, _mm512_mullo_epi32(dots, lane_scale));
  }
  const __m128i scale16 = _mm_packs_epi32(_mm256_castsi256_si128(scale), _mm256_extracti128_si256(scale, 1));
  const __m128i offset = _mm_madd_epi16(scale16, _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.sum32)));
  sum = _mm512_sub_epi32(sum, _mm512_zextsi128_si512(_mm_slli_epi32(offset, 7)));
  const __m512 d = _mm512_mul_ps(_mm512_set1_ps(_cvtsh_ss(load_le16(w))), _mm512_load_ps(a.d));
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), d, acc);
}

inline float sum16(__m512 v) { return _mm512_reduce_add_ps(v); }

QPairDotFn avx512_qpair(DType t) {
  switch (t) {
    case DType::Q4_0: return nibble_group_rows<Q4_0Group512>;
    case DType::Q5_0: return nibble_group_rows<NibbleGroup512<Q5_0Format>>;
    case DType::Q4_1: return nibble_group_rows<NibbleGroup512<Q4_1Format>>;
    case DType::Q5_1: return nibble_group_rows<NibbleGroup512<Q5_1Format>>;
    case DType::IQ4_NL: return nibble_group_rows<NibbleGroup512<IQ4_NLFormat>>;
    case DType::Q8_0: return pair_rows<68, Q8Pair, q8_0_pair, kQ8_0Prefetch>;
    case DType::Q4_K: return k_quant_rows<__m512, sum16, 144, q45_k_block<false>>;
    case DType::Q5_K: return k_quant_rows<__m512, sum16, 176, q45_k_block<true>>;
    case DType::Q6_K: return k_quant_rows<__m512, sum16, 210, q6_k_block>;
    case DType::IQ4_XS: return k_quant_rows<__m512, sum16, 136, iq4_xs_block>;
    case DType::Q3_K: return k_quant_rows<__m512, sum16, 110, two_bit_k_block<true>>;
    case DType::Q2_K: return k_quant_rows<__m512, sum16, 84, two_bit_k_block<false>>;
    default: return nullptr;
  }
}

}  // namespace
}  // namespace umi::cpu
