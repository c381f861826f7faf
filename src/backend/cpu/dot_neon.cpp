// The arm64 kernels for CPUs with the dot-product instructions (Armv8.2
// DotProd: every Apple Silicon core, Graviton 2 and later, Cortex-A76 and
// later). This file gets -march=armv8.2-a+dotprod; dot_portable.cpp adds the
// set only where the CPU reports the feature, so one binary still runs on an
// older core (with the portable set).
//
// sdot sums four signed byte products into each int32 lane, as vpdpbusd does
// on x86, but signed by signed: each format's 32-value sub-block is decoded to
// int8 (as stored for Q8_0, else the unsigned 0..63 codes), multiplied with
// the q8 activations, and a format's offset (8 for Q4_0, 16 for Q5_0, 32 for
// Q6_K) is taken off in the same integer sum: its accumulator starts at
// -offset * sum(q), as the x86 offset path does. Prefill decodes each weight
// block once for four activation rows (qdot4).
//
// Not here yet: a tiled GEMM and single-token pair kernels (their activation
// layouts in q8_pairs.h are x86's); the engine uses these row kernels for
// every token count. Checked for correctness under qemu (tools/test-arm64.sh);
// no arm64 machine has timed them.
#include <arm_neon.h>

#include <type_traits>
#include <utility>

#include "backend/cpu/attention_impl.h"
#include "backend/cpu/dot_impl.h"
#include "backend/cpu/elementwise_impl.h"
#include "backend/cpu/kernel_set.h"
#include "backend/cpu/quant_blocks.h"

namespace umi::cpu {
namespace {

// One 32-value sub-block as int8: values 0-15 and 16-31.
struct Sub {
  int8x16_t lo, hi;
};

inline uint8x16_t load16(const std::byte* p) { return vld1q_u8(reinterpret_cast<const uint8_t*>(p)); }
inline int8x16_t s8(uint8x16_t v) { return vreinterpretq_s8_u8(v); }
inline uint8x16_t low_nibbles(uint8x16_t v) { return vandq_u8(v, vdupq_n_u8(0x0F)); }

// 16 packed bytes -> values 0-15 (low nibbles) and 16-31 (high nibbles).
inline Sub nibbles(const std::byte* p) {
  const uint8x16_t q = load16(p);
  return {s8(low_nibbles(q)), s8(vshrq_n_u8(q, 4))};
}

// Byte i = 16 where bit i of `bits` is set, else 0 (the 5-bit formats' bit 4).
inline uint8x16_t bit4_bytes(uint32_t bits) {
  const uint8x16_t spread = vcombine_u8(vdup_n_u8(static_cast<uint8_t>(bits)), vdup_n_u8(static_cast<uint8_t>(bits >> 8)));
  const uint8x16_t each = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
  return vandq_u8(vtstq_u8(spread, each), vdupq_n_u8(16));
}

// The formats (quant_blocks.h): weights(s) decodes sub-block s; scale(s) is
// its float scale, or for Q6_K (two_scales) scale(s, h) that of its half h;
// min(s) the constant added to each value of the formats with a min.
struct Q8_0N {
  static constexpr int elems = 32, bytes = 34, subs = 1, offset = 0;
  static constexpr bool has_min = false, two_scales = false;
  const std::byte* blk;
  Sub weights(int) const { return {s8(load16(blk + 2)), s8(load16(blk + 18))}; }
  float scale(int) const { return scalar_f16(blk); }
  float min(int) const { return 0; }
};

struct Q4_0N {
  static constexpr int elems = 32, bytes = 18, subs = 1, offset = 8;
  static constexpr bool has_min = false, two_scales = false;
  const std::byte* blk;
  Sub weights(int) const { return nibbles(blk + 2); }
  float scale(int) const { return scalar_f16(blk); }
  float min(int) const { return 0; }
};

struct Q4_1N {
  static constexpr int elems = 32, bytes = 20, subs = 1, offset = 0;
  static constexpr bool has_min = true, two_scales = false;
  const std::byte* blk;
  Sub weights(int) const { return nibbles(blk + 4); }
  float scale(int) const { return scalar_f16(blk); }
  float min(int) const { return scalar_f16(blk + 2); }
};

template <bool HasMin>
struct Q5N {
  static constexpr int elems = 32, bytes = HasMin ? 24 : 22, subs = 1, offset = HasMin ? 0 : 16;
  static constexpr bool has_min = HasMin, two_scales = false;
  const std::byte* blk;
  Sub weights(int) const {
    const std::byte* p = blk + (HasMin ? 4 : 2);
    const uint32_t qh = load_le32(p);
    const Sub n = nibbles(p + 4);
    return {vorrq_s8(n.lo, s8(bit4_bytes(qh))), vorrq_s8(n.hi, s8(bit4_bytes(qh >> 16)))};
  }
  float scale(int) const { return scalar_f16(blk); }
  float min(int) const { return HasMin ? scalar_f16(blk + 2) : 0.0f; }
};

template <bool FiveBit>
struct Q45KN {
  static constexpr int elems = 256, bytes = FiveBit ? 176 : 144, subs = 8, offset = 0;
  static constexpr bool has_min = true, two_scales = false;
  const std::byte* blk;
  float d, dmin;
  uint8_t sc[8], m[8];
  explicit Q45KN(const std::byte* b) : blk(b), d(scalar_f16(b)), dmin(scalar_f16(b + 2)) { unpack_k_scales(b + 4, sc, m); }
  Sub weights(int s) const {
    const std::byte* qs = blk + (FiveBit ? 48 : 16) + 32 * (s / 2);
    uint8x16_t v[2] = {load16(qs), load16(qs + 16)};
    for (uint8x16_t& x : v) x = s % 2 ? vshrq_n_u8(x, 4) : low_nibbles(x);
    if constexpr (FiveBit) {  // bit s of qh[l] is bit 4 of value l
      const uint8x16_t bit = vdupq_n_u8(static_cast<uint8_t>(1 << s)), sixteen = vdupq_n_u8(16);
      for (int h = 0; h < 2; ++h) v[h] = vorrq_u8(v[h], vandq_u8(vtstq_u8(load16(blk + 16 + 16 * h), bit), sixteen));
    }
    return {s8(v[0]), s8(v[1])};
  }
  float scale(int s) const { return d * sc[s]; }
  float min(int s) const { return -dmin * m[s]; }
};

struct Q6KN {
  static constexpr int elems = 256, bytes = 210, subs = 8, offset = 32;
  static constexpr bool has_min = false, two_scales = true;
  const std::byte* blk;
  float d;
  explicit Q6KN(const std::byte* b) : blk(b), d(scalar_f16(b + 208)) {}
  Sub weights(int s) const {  // as q6k_value: value l of sub-block s
    const int half = s / 4, g = s % 4;
    const std::byte* ql = blk + 64 * half + 32 * (g & 1);
    const std::byte* qh = blk + 128 + 32 * half;
    const int8x16_t down = vdupq_n_s8(static_cast<int8_t>(-2 * g));  // a negative shift moves right
    uint8x16_t v[2];
    for (int h = 0; h < 2; ++h) {
      const uint8x16_t lo = load16(ql + 16 * h);
      const uint8x16_t nib = g < 2 ? low_nibbles(lo) : vshrq_n_u8(lo, 4);
      const uint8x16_t top = vandq_u8(vshlq_u8(load16(qh + 16 * h), down), vdupq_n_u8(3));
      v[h] = vorrq_u8(nib, vshlq_n_u8(top, 4));
    }
    return {s8(v[0]), s8(v[1])};
  }
  float scale(int s, int h) const { return d * static_cast<float>(static_cast<int8_t>(blk[192 + 2 * s + h])); }
  float min(int) const { return 0; }
};

// Q3_K: two bits - 4, plus 4 where the hmask bit is set; a scale per 16.
struct Q3KN {
  static constexpr int elems = 256, bytes = 110, subs = 8, offset = 0;
  static constexpr bool has_min = false, two_scales = true;
  const std::byte* blk;
  float d;
  explicit Q3KN(const std::byte* b) : blk(b), d(scalar_f16(b + 108)) {}
  Sub weights(int s) const {
    const int8x16_t down = vdupq_n_s8(static_cast<int8_t>(-2 * (s % 4)));
    const uint8x16_t bit = vdupq_n_u8(static_cast<uint8_t>(1 << s));
    int8x16_t v[2];
    for (int h = 0; h < 2; ++h) {
      const uint8x16_t bits = vandq_u8(vshlq_u8(load16(blk + 32 + 32 * (s / 4) + 16 * h), down), vdupq_n_u8(3));
      const uint8x16_t four = vandq_u8(vtstq_u8(load16(blk + 16 * h), bit), vdupq_n_u8(4));
      v[h] = vsubq_s8(s8(vorrq_u8(bits, four)), vdupq_n_s8(4));
    }
    return {v[0], v[1]};
  }
  float scale(int s, int h) const { return d * static_cast<float>(q3k_scale(blk + 96, 2 * s + h) - 32); }
  float min(int, int) const { return 0; }
};

// Q2_K: two bits (0..3), a scale and a min per 16 values.
struct Q2KN {
  static constexpr int elems = 256, bytes = 84, subs = 8, offset = 0;
  static constexpr bool has_min = true, two_scales = true;
  const std::byte* blk;
  float d, dmin;
  explicit Q2KN(const std::byte* b) : blk(b), d(scalar_f16(b + 80)), dmin(scalar_f16(b + 82)) {}
  Sub weights(int s) const {
    const int8x16_t down = vdupq_n_s8(static_cast<int8_t>(-2 * (s % 4)));
    const std::byte* qs = blk + 16 + 32 * (s / 4);
    return {s8(vandq_u8(vshlq_u8(load16(qs), down), vdupq_n_u8(3))), s8(vandq_u8(vshlq_u8(load16(qs + 16), down), vdupq_n_u8(3)))};
  }
  float scale(int s, int h) const { return d * static_cast<float>(static_cast<uint8_t>(blk[2 * s + h]) & 0xF); }
  float min(int s, int h) const { return -dmin * static_cast<float>(static_cast<uint8_t>(blk[2 * s + h]) >> 4); }
};

// IQ4_NL / IQ4_XS: a nibble indexes kIq4nlValues (one table lookup).
inline Sub iq4_levels(const std::byte* qs) {
  const int8x16_t table = vld1q_s8(kIq4nlValues);
  const Sub n = nibbles(qs);
  return {vqtbl1q_s8(table, vreinterpretq_u8_s8(n.lo)), vqtbl1q_s8(table, vreinterpretq_u8_s8(n.hi))};
}

struct IQ4NLN {
  static constexpr int elems = 32, bytes = 18, subs = 1, offset = 0;
  static constexpr bool has_min = false, two_scales = false;
  const std::byte* blk;
  Sub weights(int) const { return iq4_levels(blk + 2); }
  float scale(int) const { return scalar_f16(blk); }
  float min(int) const { return 0; }
};

struct IQ4XSN {
  static constexpr int elems = 256, bytes = 136, subs = 8, offset = 0;
  static constexpr bool has_min = false, two_scales = false;
  const std::byte* blk;
  float d;
  explicit IQ4XSN(const std::byte* b) : blk(b), d(scalar_f16(b)) {}
  Sub weights(int s) const { return iq4_levels(blk + 8 + 16 * s); }
  float scale(int s) const { return d * static_cast<float>(iq4xs_scale(blk, s) - 32); }
  float min(int) const { return 0; }
};

template <class F>
F make_format(const std::byte* blk) {
  if constexpr (std::is_constructible_v<F, const std::byte*>) return F(blk);
  else return F{blk};
}

// An int32x4 of zeros but lane 0 = v: where the offset's correction starts.
inline int32x4_t lane0(int32_t v) { return vsetq_lane_s32(v, vdupq_n_s32(0), 0); }

// out[j] = row . x[j] for j < NX. Two accumulators per row alternate between
// sub-blocks so that consecutive multiply-adds do not wait on each other.
template <class F, int NX>
void qdot_rows(const std::byte* row, const Q8Block* const* x, int64_t n, float* out) {
  float32x4_t acc[NX][2];
  float mins[NX][2];
  for (int j = 0; j < NX; ++j) acc[j][0] = acc[j][1] = vdupq_n_f32(0), mins[j][0] = mins[j][1] = 0;
  auto block = [&]<int Parity>(int64_t b, std::integral_constant<int, Parity>) {
    const F f = make_format<F>(row + b * F::bytes);
    [&]<int... S>(std::integer_sequence<int, S...>) {
      ([&] {
        const Sub w = f.weights(S);
        for (int j = 0; j < NX; ++j) {
          const Q8Block& a = x[j][b * F::subs + S];
          const int8x16_t q0 = vld1q_s8(a.q), q1 = vld1q_s8(a.q + 16);
          float32x4_t& into = acc[j][(Parity + S) & 1];
          if constexpr (F::two_scales) {
            const int32x4_t d0 = vdotq_s32(lane0(-F::offset * a.sum[0]), w.lo, q0);
            const int32x4_t d1 = vdotq_s32(lane0(-F::offset * a.sum[1]), w.hi, q1);
            into = vfmaq_n_f32(into, vcvtq_f32_s32(d0), f.scale(S, 0) * a.d);
            into = vfmaq_n_f32(into, vcvtq_f32_s32(d1), f.scale(S, 1) * a.d);
          } else {
            const int32x4_t start = F::offset ? lane0(-F::offset * (a.sum[0] + a.sum[1])) : vdupq_n_s32(0);
            const int32x4_t d = vdotq_s32(vdotq_s32(start, w.lo, q0), w.hi, q1);
            into = vfmaq_n_f32(into, vcvtq_f32_s32(d), f.scale(S) * a.d);
          }
          if constexpr (F::has_min && F::two_scales)  // Q2_K: a min per 16 values
            mins[j][(Parity + S) & 1] += (f.min(S, 0) * static_cast<float>(a.sum[0]) + f.min(S, 1) * static_cast<float>(a.sum[1])) * a.d;
          else if constexpr (F::has_min)
            mins[j][(Parity + S) & 1] += f.min(S) * a.d * a.qsum();
        }
      }(), ...);
    }(std::make_integer_sequence<int, F::subs>{});
  };
  const int64_t blocks = n / F::elems;
  int64_t b = 0;
  for (; b + 2 <= blocks; b += 2) {
    block(b, std::integral_constant<int, 0>{});
    block(b + 1, std::integral_constant<int, 1>{});
  }
  if (b < blocks) block(b, std::integral_constant<int, 0>{});
  for (int j = 0; j < NX; ++j) out[j] = vaddvq_f32(vaddq_f32(acc[j][0], acc[j][1])) + (mins[j][0] + mins[j][1]);
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

std::pair<QDotFn, QDot4Fn> neon_qkernels(DType t) {
  switch (t) {
    case DType::Q8_0: return both<Q8_0N>();
    case DType::Q4_0: return both<Q4_0N>();
    case DType::Q4_1: return both<Q4_1N>();
    case DType::Q5_0: return both<Q5N<false>>();
    case DType::Q5_1: return both<Q5N<true>>();
    case DType::Q4_K: return both<Q45KN<false>>();
    case DType::Q5_K: return both<Q45KN<true>>();
    case DType::Q6_K: return both<Q6KN>();
    case DType::Q3_K: return both<Q3KN>();
    case DType::Q2_K: return both<Q2KN>();
    case DType::IQ4_NL: return both<IQ4NLN>();
    case DType::IQ4_XS: return both<IQ4XSN>();
    default: return {nullptr, nullptr};
  }
}

}  // namespace

const KernelSet& neon_kernels() {
  static constexpr KernelSet set{
      "neon", impl_table, [](DType t) { return neon_qkernels(t).first; }, [](DType t) { return neon_qkernels(t).second; },
      [](DType) -> QGemmFn { return nullptr; }, impl_scale_add, impl_quantize_activations,
      impl_kv_to_f32, impl_attn_scores, impl_attn_accumulate, [](DType) -> QPairDotFn { return nullptr; },
      impl_swiglu, impl_exp_sum, impl_kv_from_f32, impl_quantize_activations_k, impl_attn_keys};
  return set;
}

}  // namespace umi::cpu
