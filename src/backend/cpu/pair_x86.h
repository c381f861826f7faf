// What the single-token pair kernels of both x86 builds share
// (pair_dot_avx512.h, pair_dot_avx2.h): their software prefetch, the
// K-quants' scale unpacking and the K-quants' and Q4_0's row drivers. AVX2 at most: each build's file includes it
// with its own flags.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "backend/cpu/q8_pairs.h"
#include "backend/cpu/quant_blocks.h"

namespace umi::cpu {
namespace {

// Prefetching. The hardware prefetchers stop at 4 KB boundaries (physical
// pages, even inside a 2 MiB mapping): left alone, each page's first lines
// cost a full memory latency (1B-shaped decode with no software prefetch:
// Q4_0 26.7 tok/s, Q8_0 16, session 11). A kernel's Prefetch says what it
// touches ahead of its reads, for every two steps:
// - page: the first line of any page that the reads PageAhead bytes on
//   enter, once per page: it starts the L2 streamer on that page early;
// - lines: every line LineAhead bytes on, into L1 (0: none).
// The two kernels want different things. Q4_0 computes ~5 cycles a 72-byte
// step (5.2 in L2, session 13), and a prefetch of every line (each one holds
// one of the core's few L1 miss buffers until its line arrives) kept a core
// under ~20 GB/s where the streamer alone reaches ~30: the page touch alone,
// 4 KB ahead. Q8_0 runs ~4 cycles a 68-byte step (session 12), twice the
// bytes a weight, and wants its lines in L1 as well: every line 4 KB ahead
// and the page 8 KB ahead, whose streamer has the lines in L2 by then.
// Measured in one process, the variants alternating token by token in a 1B-shaped decode (session 14,
// medians of 40 steps each, two threads): Q4_0 every line 4 KB ahead 50.0
// and 48.9 tok/s, page only 54.9 and 53.8 (2, 6, 8, 10, 12 and 16 KB ahead
// within noise or worse, two lines a page 52.4 / 49.3); Q8_0 every line
// 34.8 / 34.6, with the page 8 KB ahead 38.8 / 38.9, page only 28.2 / 32.3.
struct Prefetch {
  int page_ahead, line_ahead;
};
constexpr Prefetch kQ4_0Prefetch{4096, 0}, kQ8_0Prefetch{8192, 4096};
constexpr uintptr_t kPage = 4096;

// What `pf` touches ahead of reads [p, p + bytes).
template <Prefetch pf>
inline void prefetch_ahead(const std::byte* p, int bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p) + pf.page_ahead, b = a + static_cast<uintptr_t>(bytes);
  if ((a ^ b) >= kPage) _mm_prefetch(reinterpret_cast<const char*>(b & ~(kPage - 1)), _MM_HINT_T0);
  if constexpr (pf.line_ahead > 0)
    for (int line = 0; line < (bytes + 63) / 64; ++line)
      _mm_prefetch(reinterpret_cast<const char*>(p + pf.line_ahead + 64 * line), _MM_HINT_T0);
}

// The 12 bytes of 6-bit scales and mins (quant_blocks.h) at p as bytes
// sc[0..7], m[0..7]: two byte shuffles put each output's low bits (q[j],
// q[8 + j], q[4 + j], q[8 + j] >> 4) and its top two (q[j] >> 6, q[4 + j] >> 6)
// in place. Reads 16 bytes (the last four are the block's next field).
inline __m128i unpack_k_scales(const std::byte* p) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i low = _mm_shuffle_epi8(q, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
  const __m128i top = _mm_shuffle_epi8(q, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
  const __m128i low_bits = _mm_and_si128(_mm_blend_epi16(low, _mm_srli_epi32(low, 4), 0xC0),
                                         _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15));
  return _mm_or_si128(low_bits, _mm_and_si128(_mm_srli_epi16(top, 2), _mm_set1_epi8(0x30)));
}

// A Q4_K/Q5_K block's f16 d and dmin (its first four bytes) as floats 0
// and 1.
inline __m128 k_d_dmin(const std::byte* w) {
  int32_t bits;
  std::memcpy(&bits, w, 4);
  return _mm_cvtph_ps(_mm_cvtsi32_si128(bits));
}

// The mins' share of a Q4_K/Q5_K block into acc_min: dmin x the
// activations' scale x the sum over s of m[s] x (sub-block s's sum of q);
// scales as unpack_k_scales gives them (m in bytes 8-15).
inline __m128 add_k_mins(__m128 acc_min, __m128i scales, __m128 d_dmin, const Q8KBlock& a) {
  const __m128i mins = _mm_madd_epi16(_mm_cvtepu8_epi16(_mm_srli_si128(scales, 8)), _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.sum32)));
  return _mm_fmadd_ps(_mm_cvtepi32_ps(mins), _mm_mul_ps(_mm_permute_ps(d_dmin, 0x55), _mm_load_ps(a.d)), acc_min);
}

// Q3_K's sixteen 6-bit scales minus 32 as words (q3k_scale, quant_blocks.h):
// low nibbles of bytes 0-7, then their high nibbles; top bits from bytes
// 8-11, byte 8 + g % 4 shifted right by 2 (g / 4) (one 32-bit variable shift).
inline __m256i q3_k_scales(const std::byte* p) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  const __m128i low4 = _mm_and_si128(_mm_unpacklo_epi64(b, _mm_srli_epi16(b, 4)), _mm_set1_epi8(0x0F));
  int32_t top_bytes;
  std::memcpy(&top_bytes, p + 8, 4);
  const __m128i top = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32(top_bytes), _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
  return _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm_or_si128(low4, _mm_slli_epi16(top, 4))), _mm256_set1_epi16(32));
}

// What both builds' Q3_K and Q2_K kernels do once a super-block before its
// values: the sixteen scales as words (sc16: Q3_K's minus 32, Q2_K's low
// nibbles) and the integer sums' start (eight int32). Both read q as
// unsigned (Q3_K's q + 4, 0..7; Q2_K's 0..3): Q3_K starts from -4 x the sum
// over 16-value groups g of sc_g x their sum of q; Q2_K from zero, its mins
// (dmin x m_g, the high nibbles) x the activations' sums per 16 going into
// the 128-bit accumulator subtracted at the end.
struct TwoBitHead {
  __m256i sc16, sums;
};
template <bool Q3>
inline TwoBitHead two_bit_k_head(__m128& acc_min, const std::byte* w, const Q8KBlock& a) {
  const __m256i sum16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.sum16));
  if constexpr (Q3) {
    const __m256i sc16 = q3_k_scales(w + 96);
    return {sc16, _mm256_madd_epi16(_mm256_mullo_epi16(sc16, _mm256_set1_epi16(-4)), sum16)};
  } else {
    const __m128i sm = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w));
    const __m256i mins = _mm256_madd_epi16(_mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), _mm_set1_epi8(0x0F))), sum16);
    const __m128i m4 = _mm_add_epi32(_mm256_castsi256_si128(mins), _mm256_extracti128_si256(mins, 1));
    const float dmin_d = _cvtsh_ss(load_le16(w + 82)) * a.d[0];
    acc_min = _mm_fmadd_ps(_mm_cvtepi32_ps(m4), _mm_set1_ps(dmin_d), acc_min);
    return {_mm256_cvtepu8_epi16(_mm_and_si128(sm, _mm_set1_epi8(0x0F))), _mm256_setzero_si256()};
  }
}

// The K-quants' rows, a super-block against one Q8KBlock (q8_pairs.h) at a
// time: Acc is the build's float vector and Sum its horizontal sum; the
// mins' 128-bit accumulator is subtracted at the end. They prefetch as Q4_0
// does (the page touch alone): they compute at least as much per byte; other
// distances were not measured for them.
template <class Acc, float (*Sum)(Acc), int BlockBytes, void (*Block)(Acc&, __m128&, const std::byte*, const Q8KBlock&)>
void k_quant_rows(const std::byte* rows_data, size_t row_bytes, int64_t rows, const void* xv, int64_t pairs, float* y) {
  const Q8KBlock* x = static_cast<const Q8KBlock*>(xv);
  const int64_t blocks = pairs / 4;
  for (int64_t r = 0; r < rows; ++r) {
    const std::byte* row = rows_data + static_cast<size_t>(r) * row_bytes;
    Acc acc{};
    __m128 acc_min = _mm_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      prefetch_ahead<kQ4_0Prefetch>(row + b * BlockBytes, BlockBytes);
      Block(acc, acc_min, row + b * BlockBytes, x[b]);
    }
    const __m128 m2 = _mm_add_ps(acc_min, _mm_movehl_ps(acc_min, acc_min));
    y[r] = Sum(acc) - _mm_cvtss_f32(_mm_add_ss(m2, _mm_movehdup_ps(m2)));
  }
}

// The 4-bit formats of 32-value blocks (quant_blocks.h) as the group
// kernels of both builds read them: Bytes a block, its 16 bytes of nibbles
// at Nibbles (low nibbles values 0-15, high ones 16-31), Q5's 32 fifth bits
// at High (-1: none), Q4_1/Q5_1's f16 m after the f16 d at 0 (Min), and
// for IQ4_NL (Levels) nibbles that index kIq4nlValues (a byte shuffle):
// the 512-bit kernel reads them as levels + 128 (kIq4Unsigned) for
// vpdpbusd, the 256-bit one as signed levels (vpmaddubsw would saturate on
// levels + 128: it moves their sign to the activations instead). A group of sixteen blocks (kGroupBytes) takes one Act of
// activations (q8_pairs.h): a Q4MinGroup for the formats with m, else a Q4Group.
template <int Bytes, int Nibbles, int High, bool Min, bool Levels = false>
struct NibbleFormat {
  static constexpr int kBytes = Bytes, kNibbles = Nibbles, kHigh = High, kGroupBytes = 16 * Bytes;
  static constexpr bool kMin = Min, kLevels = Levels;
  using Act = std::conditional_t<Min, Q4MinGroup, Q4Group>;
};
using Q4_0Format = NibbleFormat<18, 2, -1, false>;
using Q5_0Format = NibbleFormat<22, 6, 2, false>;
using Q4_1Format = NibbleFormat<20, 4, -1, true>;
using Q5_1Format = NibbleFormat<24, 8, 4, true>;
using IQ4_NLFormat = NibbleFormat<18, 2, -1, false, true>;

// IQ4's levels + 128: unsigned bytes, as vpdpbusd's weights must be.
struct Iq4Table {
  alignas(16) uint8_t level[16];
  constexpr Iq4Table() : level{} {
    for (int k = 0; k < 16; ++k) level[k] = static_cast<uint8_t>(kIq4nlValues[k] + 128);
  }
};
inline constexpr Iq4Table kIq4Unsigned{};

// Rows of Q4_0 and the other 4-bit formats, a group of sixteen blocks
// (G::kBytes of weights, a G::Act of activations: Q4Group or Q4MinGroup)
// after another, for both builds: G::Acc is the build's float vector, G::step<Quads> adds one group
// (Quads < 4: a row's last, partial group, which reads only those quads) and
// G::sum the two accumulators' total. Two accumulators: consecutive groups'
// adds do not wait on each other; prefetching as above, once every two groups.
template <class G>
void nibble_group_rows(const std::byte* rows_data, size_t row_bytes, int64_t rows, const void* xv, int64_t pairs, float* y) {
  using Act = typename G::Act;
  constexpr int kBytes = G::kBytes;  // sixteen blocks of weights
  const Act* x = static_cast<const Act*>(xv);
  const int64_t groups = pairs / 8, tail = pairs % 8 / 2;  // whole groups; quads in the last one
  for (int64_t r = 0; r < rows; ++r) {
    const std::byte* row = rows_data + static_cast<size_t>(r) * row_bytes;
    typename G::Acc a0{}, a1{};
    int64_t g = 0;
    for (; g + 2 <= groups; g += 2) {
      prefetch_ahead<kQ4_0Prefetch>(row + g * kBytes, 2 * kBytes);
      a0 = G::template step<4>(a0, row + g * kBytes, x + g);
      a1 = G::template step<4>(a1, row + (g + 1) * kBytes, x + g + 1);
    }
    if (g < groups) a0 = G::template step<4>(a0, row + g * kBytes, x + g), ++g;
    switch (tail) {
      case 1: a1 = G::template step<1>(a1, row + g * kBytes, x + g); break;
      case 2: a1 = G::template step<2>(a1, row + g * kBytes, x + g); break;
      case 3: a1 = G::template step<3>(a1, row + g * kBytes, x + g); break;
      default: break;
    }
    y[r] = G::sum(a0, a1);
  }
}

}  // namespace
}  // namespace umi::cpu
