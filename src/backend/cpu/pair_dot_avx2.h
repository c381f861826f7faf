// The 256-bit single-token row kernels for CPUs with AVX2 and no AVX-512
// (Zen 2 and 3, Intel Core up to the 14th generation), for dot_avx2.cpp
// alone: the 4-bit formats, the K-quants and the IQ4 types, reading the activations in the layouts the
// 512-bit kernels read (q8_pairs.h), half as many weights an instruction.
// Without vpdpbusd a byte product is vpmaddubsw (u8 x s8 into int16 pairs)
// and vpmaddwd (int16 pairs into int32): the integer sums stay exact as long
// as no int16 pair passes 32,767 (the bounds below). Q8_0 stays on the row
// kernels: its pair layout interleaves two blocks by dword across 512 bits.
//
// The row kernels these replace spent ~14 instructions a 32-value block on
// unpacking, sign tricks and a float scale per block (Q4_0), and a float
// multiply-add per 16 values (K-quants); a 1B-shaped decode on the
// development VM with the AVX2 build decoded Q4_0 at 34 tok/s and Q4_K at
// 13-14 where the AVX-512 pair kernels reach ~70 and ~50 (PERFORMANCE.md).
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "backend/cpu/dot_x86.h"
#include "backend/cpu/pair_x86.h"
#include "backend/cpu/q8_pairs.h"
#include "backend/cpu/quant_blocks.h"

namespace umi::cpu {
namespace {

// Two 16-byte loads as one vector: lo in lanes 0-3, hi in 4-7.
inline __m256i load_two(const std::byte* lo, const std::byte* hi) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lo))),
                                 _mm_loadu_si128(reinterpret_cast<const __m128i*>(hi)), 1);
}

// The 4-bit formats (NibbleFormat, pair_x86.h: Q4_0, Q5_0, Q4_1, Q5_1), a
// group of sixteen blocks (a Q4Group or Q4MinGroup of activations) at a time
// as the 512-bit kernels take it, half a quad (two blocks) an instruction.
// Blocks 2h and 2h + 1 of quad p (at b and b + Bytes): their 16 bytes of
// nibbles side by side, lanes 0-3 block 2h and 4-7 block 2h + 1 as in the
// quad's activations (lanes 8h..8h + 7). Q5's fifth bits add 16 (below).
// Int16 pairs of low plus high values stay under 2 x 2 x 31 x 128 = 15,872.

// Bits 0-15 (Byte 0: the low nibbles') or 16-31 (Byte 2: the high ones') of
// the 32-bit qh at the start of each 128-bit lane, as 16 where set: byte i
// of a lane takes bit i % 8 of qh's byte Byte + i / 8.
template <int Byte>
inline __m256i fifth_bits(__m256i qh) {
  constexpr int64_t lo = 0x0101010101010101LL * Byte, hi = 0x0101010101010101LL * (Byte + 1);
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
  const __m256i spread = _mm256_shuffle_epi8(qh, _mm256_set_epi64x(hi, lo, hi, lo));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(16));
}

// Signed bytes v (|v| <= 127) times the q at x, into int16 pairs:
// vpmaddubsw's first operand is unsigned, so v's sign moves to q (vpsignb;
// no IQ4 level is 0) and |v| goes in: pairs under 2 x 127 x 127 = 32,258.
inline __m256i signed_pairs(__m256i v, const int8_t* x) {
  return _mm256_maddubs_epi16(_mm256_abs_epi8(v), _mm256_sign_epi8(load32(x), v));
}

template <class F>
inline __m256i nibble_half_sums(const std::byte* b, const Q4Quad* x, int h) {
  const __m256i packed = load_two(b + F::kNibbles, b + F::kBytes + F::kNibbles);
  __m256i low = low_nibbles(packed), high = high_nibbles(packed);
  if constexpr (F::kLevels) {  // IQ4_NL: signed levels; the low and high pairs cannot share an int16
    const __m256i table = iq4_table(), ones = _mm256_set1_epi16(1);
    return _mm256_add_epi32(_mm256_madd_epi16(signed_pairs(_mm256_shuffle_epi8(table, low), x->q_low + 32 * h), ones),
                            _mm256_madd_epi16(signed_pairs(_mm256_shuffle_epi8(table, high), x->q_high + 32 * h), ones));
  }
  if constexpr (F::kHigh >= 0) {
    const __m256i qh = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si32(b + F::kHigh)), _mm_loadu_si32(b + F::kBytes + F::kHigh), 1);
    low = _mm256_or_si256(low, fifth_bits<0>(qh));
    high = _mm256_or_si256(high, fifth_bits<2>(qh));
  }
  const __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(low, load32(x->q_low + 32 * h)),
                                         _mm256_maddubs_epi16(high, load32(x->q_high + 32 * h)));
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

// Q4_1/Q5_1's f16 d (words 0-7) and m (the word after d) of the eight
// blocks of half h in the order below (index i: block 4p + k, p = i % 4, k =
// 2h + i / 4), those of quads past Quads zero: 32-bit loads, unpacks and two
// unsigned packs. Eight 32-bit scalars set in a vector went through the
// stack (GCC 12: Q4_1 at 11 GB/s, slower than its row kernel). The formats
// without m set their eight d as 16-bit words, which GCC inserts in
// registers: 2-4% faster than these unpacks for Q4_0 and Q5_0 (session 24).
struct Heads {
  __m128i d, m;
};
template <class F, int Quads>
inline Heads block_heads(const std::byte* w, int h) {
  const auto at = [&](int p, int k) { return p < Quads ? _mm_loadu_si32(w + F::kBytes * (4 * p + k)) : _mm_setzero_si128(); };
  const auto four = [&](int k) {
    return _mm_unpacklo_epi64(_mm_unpacklo_epi32(at(0, k), at(1, k)), _mm_unpacklo_epi32(at(2, k), at(3, k)));
  };
  const __m128i lo = four(2 * h), hi = four(2 * h + 1), low_word = _mm_set1_epi32(0xFFFF);
  return {_mm_packus_epi32(_mm_and_si128(lo, low_word), _mm_and_si128(hi, low_word)),
          _mm_packus_epi32(_mm_srli_epi32(lo, 16), _mm_srli_epi32(hi, 16))};
}

// Half h of the group (blocks 2h, 2h + 1 of each quad): two rounds of
// horizontal adds sum each block's four lanes, leaving block 4p + k at
// index i = 4(k - 2h) + p as in the group's offsets (or d x sums) and d; the
// weights' f16 d (and m) are picked up in the same order (block_heads) and
// converted once. Quads past `Quads` (a row's last group) are zero and read
// nothing. The per-lane float work of the quad kernel this replaced
// (session 17) streamed a 65536 x 2048 Q4_0 matrix from memory at 42-48
// GB/s where this reaches 53-54 (umi_bench_kernels 65536 2048 2, session
// 20, the two in alternation).
template <class F, int Quads, class Act>
inline __m256 nibble_group_half(__m256 acc, const std::byte* w, const Act* x, int h) {
  constexpr int B = F::kBytes;
  __m256i s[4];
  for (int p = 0; p < 4; ++p) s[p] = p < Quads ? nibble_half_sums<F>(w + 4 * B * p + 2 * B * h, &x->quad[p], h) : _mm256_setzero_si256();
  const __m256i sums = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
  if constexpr (!F::kMin) {
    const auto dw = [&](int i) {
      return i % 4 < Quads ? static_cast<short>(load_le16(w + B * (4 * (i % 4) + 2 * h + i / 4))) : short{0};
    };
    const __m128i d_words = _mm_setr_epi16(dw(0), dw(1), dw(2), dw(3), dw(4), dw(5), dw(6), dw(7));
    const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(d_words), _mm256_loadu_ps(x->d + 8 * h));
    // IQ4_NL's levels went in signed: its group's offset (for levels + 128, the 512-bit kernel's) is not ours.
    const __m256i exact = F::kLevels ? sums : _mm256_add_epi32(sums, load32(x->offset + 8 * h));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(exact), d, acc);
  } else {
    const Heads heads = block_heads<F, Quads>(w, h);
    const __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(heads.d), _mm256_loadu_ps(x->d + 8 * h));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), d, acc);
    return _mm256_fmadd_ps(_mm256_cvtph_ps(heads.m), _mm256_loadu_ps(x->d_sum + 8 * h), acc);
  }
}

// One group, both halves, for the shared row driver (pair_x86.h).
template <class F>
struct NibbleGroup256 {
  using Acc = __m256;
  using Act = typename F::Act;
  static constexpr int kBytes = F::kGroupBytes;
  template <int Quads>
  static __m256 step(__m256 acc, const std::byte* w, const Act* x) {
    return nibble_group_half<F, Quads>(nibble_group_half<F, Quads>(acc, w, x, 0), w, x, 1);
  }
  static float sum(__m256 a0, __m256 a1) { return hsum8(_mm256_add_ps(a0, a1)); }
};

// A vpshufb control: every word of lanes 0-3 = word a of the source lane,
// of lanes 4-7 word b.
inline __m256i pick_words(int a, int b) {
  const int wa = static_cast<int>(static_cast<uint32_t>(2 * a | (2 * a + 1) << 8) * 0x10001u),
            wb = static_cast<int>(static_cast<uint32_t>(2 * b | (2 * b + 1) << 8) * 0x10001u);
  return _mm256_set_epi32(wb, wb, wb, wb, wa, wa, wa, wa);
}

// 32 values' integer sum: u (at most 63) x q into int16 pairs (under
// 2 x 63 x 127 = 16,002), times the scale words, into int32 lanes.
inline __m256i scaled_sub_block(__m256i sums, __m256i u, const int8_t* q, __m256i scale_words) {
  return _mm256_add_epi32(sums, _mm256_madd_epi16(_mm256_maddubs_epi16(u, load32(q)), scale_words));
}

// Q4_K and Q5_K (quant_blocks.h): sub-blocks 2c and 2c + 1 are the low and
// high nibbles of the same 32 bytes (their activations where k_position
// says: the order the 512-bit kernel wants costs this one nothing); each one's sum
// times its 6-bit scale as a word (vpmaddwd) into one int32 vector; the mins
// (dmin x m[s] x the activations' sum over sub-block s) in a 128-bit
// accumulator subtracted at the end. Q5_K's bit 4 of value l of sub-block s
// is bit s of qh[l]: with qh shifted right by 2c, bits 0 and 1 of each byte
// are those of sub-blocks 2c and 2c + 1 (a 16-bit shift moves no bit of one
// byte into bits 0-1 of another), shifted up to bit 4.
template <bool FiveBit>
inline void q45_k_block_avx2(__m256& acc, __m128& acc_min, const std::byte* w, const Q8KBlock& a) {
  const __m128i scales = unpack_k_scales(w + 4);  // bytes: sc[0..7], m[0..7]
  const __m256i sc_words = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(scales));  // sc[0..7] as words, both lanes
  const __m256i bit4 = _mm256_set1_epi8(0x10);
  const std::byte* qs = w + (FiveBit ? 48 : 16);
  __m256i qh = _mm256_setzero_si256();
  if constexpr (FiveBit) qh = load32(w + 16);
  __m256i sums = _mm256_setzero_si256();
  for (int c = 0; c < 4; ++c) {  // sub-blocks 2c, 2c + 1
    const __m256i packed = load32(qs + 32 * c);
    __m256i low = low_nibbles(packed), high = high_nibbles(packed);
    if constexpr (FiveBit) {
      low = _mm256_or_si256(low, _mm256_and_si256(_mm256_slli_epi16(qh, 4), bit4));
      high = _mm256_or_si256(high, _mm256_and_si256(_mm256_slli_epi16(qh, 3), bit4));
      qh = _mm256_srli_epi16(qh, 2);
    }
    const int8_t* q_low = a.q + k_position(DType::Q4_K, 64 * c), *q_high = a.q + k_position(DType::Q4_K, 64 * c + 32);
    sums = scaled_sub_block(sums, low, q_low, _mm256_shuffle_epi8(sc_words, pick_words(2 * c, 2 * c)));
    sums = scaled_sub_block(sums, high, q_high, _mm256_shuffle_epi8(sc_words, pick_words(2 * c + 1, 2 * c + 1)));
  }
  const __m128 d = k_d_dmin(w);  // d, dmin
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(_mm256_broadcastss_ps(d), _mm256_load_ps(a.d)), acc);
  acc_min = add_k_mins(acc_min, scales, d, a);
}

// Q6_K (quant_blocks.h), a 128-value half h at a time as 32-value groups g:
// the low nibbles of ql[0..31] (g 0), ql[32..63] (g 1), their high nibbles
// (g 2, 3), each value's top two bits from bits 2g, 2g + 1 of qh[l], moved
// to bits 4 and 5 (16-bit shifts: left 4 and 2, none, right 2). q is read as
// 0..63 (int16 pairs under 2 x 63 x 127 = 16,002) and 32 x scale[j] x (the
// activations' sum of q over those 16 values) subtracted from the start.
// Group g's first 16 values take scale 8h + 2g, the next 16 8h + 2g + 1: one
// byte shuffle of the half's eight scale words (in both lanes) per group.
inline void q6_k_block_avx2(__m256& acc, __m128&, const std::byte* w, const Q8KBlock& a) {
  const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 192)));
  const __m256i bits45 = _mm256_set1_epi8(0x30);
  __m256i sums = _mm256_madd_epi16(_mm256_mullo_epi16(sc16, _mm256_set1_epi16(-32)), load32(a.sum16));
  // Words 8h..8h + 7 in both lanes (the permute's control must be a constant even unoptimised).
  const __m256i halves_scales[2] = {_mm256_permute4x64_epi64(sc16, 0x44), _mm256_permute4x64_epi64(sc16, 0xEE)};
  for (int h = 0; h < 2; ++h) {
    const __m256i half_scales = halves_scales[h];
    const __m256i ql0 = load32(w + 64 * h), ql1 = load32(w + 64 * h + 32), qh = load32(w + 128 + 32 * h);
    const __m256i top[4] = {_mm256_slli_epi16(qh, 4), _mm256_slli_epi16(qh, 2), qh, _mm256_srli_epi16(qh, 2)};
    for (int g = 0; g < 4; ++g) {
      const __m256i ql = g % 2 ? ql1 : ql0;
      const __m256i nibble = g < 2 ? low_nibbles(ql) : high_nibbles(ql);
      const __m256i u = _mm256_or_si256(nibble, _mm256_and_si256(top[g], bits45));
      sums = scaled_sub_block(sums, u, a.q + 128 * h + 32 * g, _mm256_shuffle_epi8(half_scales, pick_words(2 * g, 2 * g + 1)));
    }
  }
  const __m256 d = _mm256_cvtph_ps(_mm_set1_epi16(static_cast<int16_t>(load_le16(w + 208))));
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(d, _mm256_load_ps(a.d)), acc);
}

// Q3_K and Q2_K (quant_blocks.h) against a Q8KBlock in order, 32 values
// at a time as the 512-bit kernel takes 64: values 128h + 32j + l are bits
// 2j of qs[32h + l] (one 32-byte load a half, a shift and a mask each j);
// Q3_K adds 4 where bit 4h + j of hmask[l] is set (that bit shifted to bit
// 2 within its byte: a 16-bit shift moves none of the other byte's bits
// there). vpmaddubsw into int16 pairs (u <= 7), vpmaddwd by the scale of
// each lane's 16 values (words 8h + 2j and 8h + 2j + 1). The scales, Q3_K's
// offset and Q2_K's mins: two_bit_k_head (pair_x86.h).
template <bool Q3>
inline void two_bit_k_block_avx2(__m256& acc, __m128& acc_min, const std::byte* w, const Q8KBlock& a) {
  const TwoBitHead head = two_bit_k_head<Q3>(acc_min, w, a);
  __m256i sums = head.sums;
  const __m256i three = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
  __m256i hmask = _mm256_setzero_si256();
  if constexpr (Q3) hmask = load32(w);
  // Words 8h..8h + 7 in both lanes (the permute's control must be a constant even unoptimised).
  const __m256i halves_scales[2] = {_mm256_permute4x64_epi64(head.sc16, 0x44), _mm256_permute4x64_epi64(head.sc16, 0xEE)};
  for (int h = 0; h < 2; ++h) {
    const __m256i bits = load32(w + (Q3 ? 32 : 16) + 32 * h);
    for (int j = 0; j < 4; ++j) {
      __m256i u = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * j), three);
      if constexpr (Q3) {
        const int bit = 4 * h + j;
        u = _mm256_or_si256(u, _mm256_and_si256(bit >= 2 ? _mm256_srli_epi16(hmask, bit - 2) : _mm256_slli_epi16(hmask, 2 - bit), four));
      }
      sums = scaled_sub_block(sums, u, a.q + 128 * h + 32 * j, _mm256_shuffle_epi8(halves_scales[h], pick_words(2 * j, 2 * j + 1)));
    }
  }
  const __m256 d = _mm256_set1_ps(_cvtsh_ss(load_le16(w + (Q3 ? 108 : 80))));
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(d, _mm256_load_ps(a.d)), acc);
}

// IQ4_XS's eight 6-bit scales ls_s - 32 as words, in both lanes, without
// BMI2's pdep (microcoded on Zen 2, an AVX2 target): word s takes byte s / 2
// of scales_l (times 16 for even s, then >> 4: its low or high nibble) and
// bits 2s, 2s + 1 of scales_h (times 2^(14 - 2s), then >> 14).
inline __m256i iq4_xs_scale_words(const std::byte* w) {
  int32_t low_bytes;
  std::memcpy(&low_bytes, w + 4, 4);
  const __m128i spread = _mm_shuffle_epi8(_mm_cvtsi32_si128(low_bytes), _mm_setr_epi8(0, -1, 0, -1, 1, -1, 1, -1, 2, -1, 2, -1, 3, -1, 3, -1));
  const __m128i low = _mm_and_si128(_mm_srli_epi16(_mm_mullo_epi16(spread, _mm_setr_epi16(16, 1, 16, 1, 16, 1, 16, 1)), 4), _mm_set1_epi16(0xF));
  const __m128i high = _mm_srli_epi16(_mm_mullo_epi16(_mm_set1_epi16(static_cast<int16_t>(load_le16(w + 2))),
                                                      _mm_setr_epi16(1 << 14, 1 << 12, 1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1)),
                                      14);
  return _mm256_broadcastsi128_si256(_mm_sub_epi16(_mm_or_si128(low, _mm_slli_epi16(high, 4)), _mm_set1_epi16(32)));
}

// IQ4_XS (136 bytes; quant_blocks.h) against a Q8KBlock in nibble-quad
// order (k_position, q8_pairs.h): 32 bytes of nibbles hold sub-blocks s =
// 4h + 2c (lanes 0-3) and s + 1, whose low nibbles' activations (values
// 0-15 of each) lie side by side at 128h + 32c and the high ones' 64 on. A
// byte shuffle gives the signed levels (signed_pairs), vpmaddwd each lane's
// ls - 32; one conversion and one multiply-add by d x the activations'
// scale a super-block.
inline void iq4_xs_block_avx2(__m256& acc, __m128&, const std::byte* w, const Q8KBlock& a) {
  const __m256i scales = iq4_xs_scale_words(w), table = iq4_table();
  __m256i sums = _mm256_setzero_si256();
  for (int h = 0; h < 2; ++h)
    for (int c = 0; c < 2; ++c) {
      const __m256i packed = load32(w + 8 + 64 * h + 32 * c);
      const __m256i sc = _mm256_shuffle_epi8(scales, pick_words(4 * h + 2 * c, 4 * h + 2 * c + 1));
      const int8_t* q = a.q + 128 * h + 32 * c;
      sums = _mm256_add_epi32(sums, _mm256_madd_epi16(signed_pairs(_mm256_shuffle_epi8(table, low_nibbles(packed)), q), sc));
      sums = _mm256_add_epi32(sums, _mm256_madd_epi16(signed_pairs(_mm256_shuffle_epi8(table, high_nibbles(packed)), q + 64), sc));
    }
  const __m256 d = _mm256_set1_ps(_cvtsh_ss(load_le16(w)));
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(d, _mm256_load_ps(a.d)), acc);
}

QPairDotFn avx2_qpair(DType t) {
  switch (t) {
    case DType::Q4_0: return nibble_group_rows<NibbleGroup256<Q4_0Format>>;
    case DType::Q5_0: return nibble_group_rows<NibbleGroup256<Q5_0Format>>;
    case DType::Q4_1: return nibble_group_rows<NibbleGroup256<Q4_1Format>>;
    case DType::Q5_1: return nibble_group_rows<NibbleGroup256<Q5_1Format>>;
    case DType::Q4_K: return k_quant_rows<__m256, hsum8, 144, q45_k_block_avx2<false>>;
    case DType::Q5_K: return k_quant_rows<__m256, hsum8, 176, q45_k_block_avx2<true>>;
    case DType::Q6_K: return k_quant_rows<__m256, hsum8, 210, q6_k_block_avx2>;
    case DType::IQ4_NL: return nibble_group_rows<NibbleGroup256<IQ4_NLFormat>>;
    case DType::IQ4_XS: return k_quant_rows<__m256, hsum8, 136, iq4_xs_block_avx2>;
    case DType::Q3_K: return k_quant_rows<__m256, hsum8, 110, two_bit_k_block_avx2<true>>;
    case DType::Q2_K: return k_quant_rows<__m256, hsum8, 84, two_bit_k_block_avx2<false>>;
    default: return nullptr;
  }
}

}  // namespace
}  // namespace umi::cpu
