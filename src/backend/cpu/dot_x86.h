// Integer kernels for quantized weights on x86, written once and compiled
// twice: dot_avx2.cpp (AVX2 + FMA: maddubs + madd) and dot_avx512vnni.cpp
// (the same code where one vpdpbusd does the multiply-add). Everything here is
// TU-local on purpose; each TU exports its table as a KernelSet.
//
// Each format below decodes one 32-value sub-block into 32 bytes of integer
// weights (signed, or unsigned for the formats with a min) plus a float scale
// per 16 values and a min; the driver multiplies them with up to four rows of
// q8 activations, so prefill unpacks each weight block once for four tokens.
#pragma once

#include <immintrin.h>

#include <utility>

#include "backend/cpu/dot_impl.h"
#include "backend/cpu/kernel_set.h"
#include "backend/cpu/quant_blocks.h"

namespace umi::cpu {
namespace {

// int32 lane k = sum over bytes 4k..4k+3 of u * s (u unsigned, s signed).
inline __m256i dot_u8_i8(__m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
  // maddubs saturates at int16: fine here, |u| <= 128 and |s| <= 127 give at most 32,512.
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

// Both signed: move w's sign onto q so that |w| can be the unsigned operand.
inline __m256i dot_i8_i8(__m256i w, __m256i q) { return dot_u8_i8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(q, w)); }

inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float f16_at(const std::byte* p) { return _cvtsh_ss(load_le16(p)); }
inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m256i low_nibbles(__m256i v) { return _mm256_and_si256(v, _mm256_set1_epi8(0x0F)); }
inline __m256i high_nibbles(__m256i v) { return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0F)); }

// 16 packed bytes -> 32 values: low nibbles first, then the high ones.
inline __m256i nibbles_32(const std::byte* p) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return low_nibbles(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed));
}

// Byte i = 0xFF where bit i of x is set, else 0.
inline __m256i bits_to_bytes(uint32_t x) {
  const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(x)), spread);
  const __m256i others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);  // every bit but bit (i % 8) of byte i
  return _mm256_cmpeq_epi8(_mm256_or_si256(v, others), _mm256_set1_epi64x(-1));
}

// `offset` makes signed weights unsigned bytes for the tiled GEMM (gemm_x86.h).
struct Q8_0F {
  static constexpr int elems = 32, bytes = 34, subs = 1, offset = 128;
  static constexpr bool is_signed = true;
  const std::byte* blk;
  __m256i weights(int) const { return load32(blk + 2); }
  __m256 scale(int) const { return _mm256_set1_ps(f16_at(blk)); }
  float min(int) const { return 0; }
};

struct Q4_0F {
  static constexpr int elems = 32, bytes = 18, subs = 1, offset = 8;
  static constexpr bool is_signed = true;
  const std::byte* blk;
  __m256i weights(int) const { return _mm256_sub_epi8(nibbles_32(blk + 2), _mm256_set1_epi8(8)); }
  __m256 scale(int) const { return _mm256_set1_ps(f16_at(blk)); }
  float min(int) const { return 0; }
};

struct Q4_1F {
  static constexpr int elems = 32, bytes = 20, subs = 1, offset = 0;
  static constexpr bool is_signed = false;
  const std::byte* blk;
  __m256i weights(int) const { return nibbles_32(blk + 4); }
  __m256 scale(int) const { return _mm256_set1_ps(f16_at(blk)); }
  float min(int) const { return f16_at(blk + 2); }
};

// 5-bit: q = nibble | bit << 4. Without a min, q - 16 is the nibble with the
// high four bits set where the bit is clear (two's complement), as ggml does.
template <bool HasMin>
struct Q5F {
  static constexpr int elems = 32, bytes = HasMin ? 24 : 22, subs = 1, offset = HasMin ? 0 : 16;
  static constexpr bool is_signed = !HasMin;
  const std::byte* blk;
  __m256i weights(int) const {
    const std::byte* p = blk + (HasMin ? 4 : 2);
    const __m256i set = bits_to_bytes(load_le32(p));
    const __m256i nib = nibbles_32(p + 4);
    if (HasMin) return _mm256_or_si256(nib, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
    return _mm256_or_si256(nib, _mm256_andnot_si256(set, _mm256_set1_epi8(static_cast<char>(0xF0))));
  }
  __m256 scale(int) const { return _mm256_set1_ps(f16_at(blk)); }
  float min(int) const { return HasMin ? f16_at(blk + 2) : 0.0f; }
};

template <bool FiveBit>
struct Q45KF {
  static constexpr int elems = 256, bytes = FiveBit ? 176 : 144, subs = 8, offset = 0;
  static constexpr bool is_signed = false;
  const std::byte* blk;
  float d, dmin;
  uint8_t sc[8], m[8];
  explicit Q45KF(const std::byte* b) : blk(b), d(f16_at(b)), dmin(f16_at(b + 2)) { unpack_k_scales(b + 4, sc, m); }
  __m256i weights(int s) const {
    const __m256i q = load32(blk + (FiveBit ? 48 : 16) + 32 * (s / 2));
    __m256i w = s % 2 ? high_nibbles(q) : low_nibbles(q);
    if (FiveBit) {
      const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << s));
      const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(load32(blk + 16), bit), bit);
      w = _mm256_or_si256(w, _mm256_and_si256(set, _mm256_set1_epi8(0x10)));
    }
    return w;
  }
  __m256 scale(int s) const { return _mm256_set1_ps(d * sc[s]); }
  float min(int s) const { return -dmin * m[s]; }
  __m256 mins8() const {  // min(0..7)
    uint64_t packed;
    std::memcpy(&packed, m, 8);
    const __m256 mf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(packed))));
    return _mm256_mul_ps(mf, _mm256_set1_ps(-dmin));
  }
};

struct Q6KF {
  static constexpr int elems = 256, bytes = 210, subs = 8, offset = 32;
  static constexpr bool is_signed = true, half_scales = true;
  const std::byte* blk;
  float d;
  explicit Q6KF(const std::byte* b) : blk(b), d(f16_at(b + 208)) {}
  __m256i weights(int s) const {
    const int half = s / 4, g = s % 4;
    const __m256i lo = load32(blk + 64 * half + 32 * (g & 1));
    const __m256i nib = g < 2 ? low_nibbles(lo) : high_nibbles(lo);
    const __m256i qh = load32(blk + 128 + 32 * half);
    const __m256i two = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * g), _mm256_set1_epi8(3));
    return _mm256_sub_epi8(_mm256_or_si256(nib, _mm256_slli_epi16(two, 4)), _mm256_set1_epi8(32));
  }
  // One scale per 16 values: int32 lanes 0-3 hold the first 16 products.
  __m256 scale(int s) const {
    const float s0 = d * static_cast<float>(static_cast<int8_t>(blk[192 + 2 * s]));
    const float s1 = d * static_cast<float>(static_cast<int8_t>(blk[192 + 2 * s + 1]));
    return _mm256_set_m128(_mm_set1_ps(s1), _mm_set1_ps(s0));
  }
  float min(int) const { return 0; }
};

// Q3_K (quant_blocks.h): q = two bits - 4, plus 4 where the hmask bit is
// set (-4..3), a scale per 16 values as Q6_K's.
struct Q3KF {
  static constexpr int elems = 256, bytes = 110, subs = 8, offset = 4;
  static constexpr bool is_signed = true, half_scales = true;
  const std::byte* blk;
  float d;
  explicit Q3KF(const std::byte* b) : blk(b), d(f16_at(b + 108)) {}
  __m256i weights(int s) const {
    const __m256i bits = _mm256_and_si256(_mm256_srli_epi16(load32(blk + 32 + 32 * (s / 4)), 2 * (s % 4)), _mm256_set1_epi8(3));
    const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << s));
    const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(load32(blk), bit), bit);
    return _mm256_sub_epi8(bits, _mm256_andnot_si256(set, _mm256_set1_epi8(4)));
  }
  __m256 scale(int s) const {
    const float s0 = d * static_cast<float>(q3k_scale(blk + 96, 2 * s) - 32), s1 = d * static_cast<float>(q3k_scale(blk + 96, 2 * s + 1) - 32);
    return _mm256_set_m128(_mm_set1_ps(s1), _mm_set1_ps(s0));
  }
  float min(int) const { return 0; }
};

// Q2_K: q = two bits (0..3), a scale and a min per 16 values (mins8_half).
struct Q2KF {
  static constexpr int elems = 256, bytes = 84, subs = 8, offset = 0;
  static constexpr bool is_signed = false, half_scales = true, half_mins = true;
  const std::byte* blk;
  float d, dmin;
  explicit Q2KF(const std::byte* b) : blk(b), d(f16_at(b + 80)), dmin(f16_at(b + 82)) {}
  __m256i weights(int s) const {
    return _mm256_and_si256(_mm256_srli_epi16(load32(blk + 16 + 32 * (s / 4)), 2 * (s % 4)), _mm256_set1_epi8(3));
  }
  __m256 scale(int s) const {
    const auto sc = [&](int h) { return d * static_cast<float>(static_cast<uint8_t>(blk[2 * s + h]) & 0xF); };
    return _mm256_set_m128(_mm_set1_ps(sc(1)), _mm_set1_ps(sc(0)));
  }
  float min(int) const { return 0; }  // see mins8_half and min_half
  // The min of sub-block s's half h (values 32s + 16h..): the tiled GEMM's.
  float min_half(int s, int h) const { return -dmin * static_cast<float>(static_cast<uint8_t>(blk[2 * s + h]) >> 4); }
  // Lane s: the min of sub-block s's half h (values 32s + 16h..).
  __m256 mins8_half(int h) const {
    const auto c = [h](int k) { return static_cast<char>(h + 2 * k); };
    const __m128i picked = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk)),
                                            _mm_setr_epi8(c(0), c(1), c(2), c(3), c(4), c(5), c(6), c(7), -1, -1, -1, -1, -1, -1, -1, -1));
    const __m128i m = _mm_and_si128(_mm_srli_epi16(picked, 4), _mm_set1_epi8(0x0F));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(m)), _mm256_set1_ps(-dmin));
  }
};

// IQ4_NL / IQ4_XS: a nibble indexes kIq4nlValues (one byte shuffle); IQ4_XS
// takes a 6-bit scale per 32 values.
inline __m256i iq4_table() { return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues))); }
inline __m256i iq4_levels(const std::byte* qs) { return _mm256_shuffle_epi8(iq4_table(), nibbles_32(qs)); }

struct IQ4NLF {
  static constexpr int elems = 32, bytes = 18, subs = 1, offset = 128;
  static constexpr bool is_signed = true;
  const std::byte* blk;
  __m256i weights(int) const { return iq4_levels(blk + 2); }
  __m256 scale(int) const { return _mm256_set1_ps(f16_at(blk)); }
  float min(int) const { return 0; }
};

struct IQ4XSF {
  static constexpr int elems = 256, bytes = 136, subs = 8, offset = 128;
  static constexpr bool is_signed = true;
  const std::byte* blk;
  float d;
  explicit IQ4XSF(const std::byte* b) : blk(b), d(f16_at(b)) {}
  __m256i weights(int s) const { return iq4_levels(blk + 8 + 16 * s); }
  __m256 scale(int s) const { return _mm256_set1_ps(d * static_cast<float>(iq4xs_scale(blk, s) - 32)); }
  float min(int) const { return 0; }
};

// Formats with a scale per 16 values (half_scales: Q6_K, Q3_K, Q2_K) and
// with a min per 16 (half_mins: Q2_K).
template <class F>
constexpr bool has_half_scales = requires { requires F::half_scales; };
template <class F>
constexpr bool has_half_mins = requires { requires F::half_mins; };

template <class F>
F make_format(const std::byte* blk) {
  if constexpr (std::is_constructible_v<F, const std::byte*>) return F(blk);
  else return F{blk};
}

// out[j] = row . x[j] for j < NX. Two accumulators per row alternate between
// sub-blocks so that consecutive FMAs do not wait on each other.
template <class F, int NX>
void qdot_rows(const std::byte* row, const Q8Block* const* x, int64_t n, float* out) {
  // Min terms: two scalar chains for the 32-value formats; for the K-quants
  // one vector FMA per block over its 8 sub-blocks (a scalar chain of eight
  // dependent adds per block would be the loop's critical path).
  constexpr bool k_min = !F::is_signed && F::subs == 8 && !has_half_mins<F>;
  // With VNNI, signed formats with one scale per sub-block read as unsigned
  // bytes (w + offset) straight into vpdpbusd, whose accumulator starts at
  // -offset * sum(q): no sign juggling per block.
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  constexpr bool offset_path = F::is_signed && F::offset != 0 && !has_half_scales<F>;
#else
  constexpr bool offset_path = false;
#endif
  __m256 acc[NX][2], acc_min[NX];
  float mins[NX][2];
  for (int j = 0; j < NX; ++j)
    acc[j][0] = acc[j][1] = acc_min[j] = _mm256_setzero_ps(), mins[j][0] = mins[j][1] = 0;
  auto block = [&]<int Parity>(int64_t b, std::integral_constant<int, Parity>) {
    const F f = make_format<F>(row + b * F::bytes);
    alignas(32) float dq[NX][8];         // a.d * sum(a.q) per sub-block (K-quants)
    alignas(32) float dq_half[NX][2][8];  // a.d * sum(a.q) per half sub-block (Q2_K)
    [&]<int... S>(std::integer_sequence<int, S...>) {
      ([&] {
        const __m256i w = f.weights(S);
        const __m256i u = offset_path ? _mm256_add_epi8(w, _mm256_set1_epi8(static_cast<char>(F::offset))) : w;
        const __m256 ws = f.scale(S);
        const float wmin = f.min(S);
        for (int j = 0; j < NX; ++j) {
          const Q8Block& a = x[j][b * F::subs + S];
          const __m256i q = load32(a.q);
          __m256i dot;
          if constexpr (offset_path)
            dot = _mm256_dpbusd_epi32(_mm256_castsi128_si256(_mm_cvtsi32_si128(-F::offset * (a.sum[0] + a.sum[1]))), u, q);
          else
            dot = F::is_signed ? dot_i8_i8(w, q) : dot_u8_i8(w, q);
          __m256& into = acc[j][(Parity + S) & 1];
          into = _mm256_fmadd_ps(_mm256_mul_ps(ws, _mm256_set1_ps(a.d)), _mm256_cvtepi32_ps(dot), into);
          if constexpr (k_min) dq[j][S] = a.d * a.qsum();
          else if constexpr (has_half_mins<F>) dq_half[j][0][S] = a.d * a.sum[0], dq_half[j][1][S] = a.d * a.sum[1];
          else if constexpr (!F::is_signed) mins[j][Parity] += wmin * a.d * a.qsum();
        }
      }(), ...);
    }(std::make_integer_sequence<int, F::subs>{});
    if constexpr (k_min)
      for (int j = 0; j < NX; ++j) acc_min[j] = _mm256_fmadd_ps(f.mins8(), _mm256_load_ps(dq[j]), acc_min[j]);
    if constexpr (has_half_mins<F>)
      for (int h = 0; h < 2; ++h)
        for (int j = 0; j < NX; ++j) acc_min[j] = _mm256_fmadd_ps(f.mins8_half(h), _mm256_load_ps(dq_half[j][h]), acc_min[j]);
  };
  const int64_t blocks = n / F::elems;
  int64_t b = 0;
  for (; b + 2 <= blocks; b += 2) {
    block(b, std::integral_constant<int, 0>{});
    block(b + 1, std::integral_constant<int, 1>{});
  }
  if (b < blocks) block(b, std::integral_constant<int, 0>{});
  for (int j = 0; j < NX; ++j)
    out[j] = hsum8(_mm256_add_ps(_mm256_add_ps(acc[j][0], acc[j][1]), acc_min[j])) + (mins[j][0] + mins[j][1]);
}

template <class F>
float qdot1(const std::byte* row, const Q8Block* x, int64_t n) {
  float out;
  qdot_rows<F, 1>(row, &x, n, &out);
  return out;
}

template <class F>
void qdot4(const std::byte* row, const Q8Block* const x[4], int64_t n, float out[4]) {
  qdot_rows<F, 4>(row, x, n, out);
}

template <class F>
constexpr std::pair<QDotFn, QDot4Fn> both() { return {qdot1<F>, qdot4<F>}; }

std::pair<QDotFn, QDot4Fn> x86_qkernels(DType t) {
  switch (t) {
    case DType::Q8_0: return both<Q8_0F>();
    case DType::Q4_0: return both<Q4_0F>();
    case DType::Q4_1: return both<Q4_1F>();
    case DType::Q5_0: return both<Q5F<false>>();
    case DType::Q5_1: return both<Q5F<true>>();
    case DType::Q4_K: return both<Q45KF<false>>();
    case DType::Q5_K: return both<Q45KF<true>>();
    case DType::Q6_K: return both<Q6KF>();
    case DType::Q3_K: return both<Q3KF>();
    case DType::Q2_K: return both<Q2KF>();
    case DType::IQ4_NL: return both<IQ4NLF>();
    case DType::IQ4_XS: return both<IQ4XSF>();
    default: return {nullptr, nullptr};
  }
}

}  // namespace
}  // namespace umi::cpu

#include "backend/cpu/gemm_x86.h"

namespace umi::cpu {
namespace {

void x86_scale_add(float* acc, float scale, float w, const std::byte* v, DType v_type, int64_t n) {
  impl_scale_add(acc, scale, w, v, v_type, n);
}

}  // namespace
}  // namespace umi::cpu
