// The arithmetic of a token draw (token_draw.h), written once for the host
// and the device so that both compute the same bits: the weight e^d of a
// logit, the fixed-point mass of a weight, and the Gumbel noise of a token.
//
// Only single IEEE operations (+ - * /, rounded to nearest), conversions and
// integer work: no library call, whose last bit differs between the C
// library and CUDA's. Both compilers must be kept from fusing a multiply
// and an add into an FMA, which rounds once instead of twice: the files that
// include this header are compiled with -ffp-contract=off (host) and
// -fmad=false (nvcc). No value here is a denormal, so flushing them to zero
// on either side changes nothing.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define UMI_HOST_DEVICE __host__ __device__
#else
#define UMI_HOST_DEVICE
#endif

namespace umi::draw {

UMI_HOST_DEVICE inline uint32_t float_bits(float f) {
  uint32_t u;
  __builtin_memcpy(&u, &f, sizeof u);
  return u;
}
UMI_HOST_DEVICE inline float bits_float(uint32_t u) {
  float f;
  __builtin_memcpy(&f, &u, sizeof f);
  return f;
}

// The natural log of a positive normal x, within 2 ulp: x = m 2^e with m in
// [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m - 1) / (m + 1).
UMI_HOST_DEVICE inline float log(float x) {
  const uint32_t bits = float_bits(x);
  int e = static_cast<int>(bits >> 23) - 127;
  float m = bits_float((bits & 0x7FFFFFu) | 0x3F800000u);  // [1, 2)
  if (m > 1.41421356f) m = m * 0.5f, e += 1;                 // exact
  const float f = m - 1.0f;                                  // exact (Sterbenz)
  const float s = f / (2.0f + f), z = s * s;                 // |s| < 0.1716
  // 2 atanh(s) = 2s + 2s (z/3 + z^2/5 + z^3/7 + z^4/9 + ...); z^5/11 < 2e-9
  const float series = z * (0.666666667f + z * (0.4f + z * (0.285714286f + z * 0.222222222f)));
  const float log_m = 2.0f * s + s * series;
  const float k = static_cast<float>(e);
  return k * 0.693145752f + (k * 1.42860682e-6f + log_m);  // ln 2 split: k * hi is exact
}

// log(1 + x) for x in (-1, 0], exact to a few ulp also where x is tiny:
// 1 + x rounds, and log(1 + x) / ((1 + x) - 1) corrects for it (Goldberg).
UMI_HOST_DEVICE inline float log1p(float x) {
  const float y = 1.0f + x;
  if (y == 1.0f) return x;
  return log(y) * (x / (y - 1.0f));
}

// The largest weight whose d is refused: below it e^d is taken as 0, which
// keeps every value here a normal float (and weight_mass is 0 long before).
constexpr float kWeightFloor = -80.0f;

// e^d for d <= 0, within 2 ulp; 0 below kWeightFloor (and for -inf, NaN):
// d = k ln2 + r, |r| <= ln2 / 2, e^r by its Taylor series to r^8 / 8!.
// Written without branches, so that a host loop over a row vectorizes.
UMI_HOST_DEVICE inline float exp(float d) {
  const bool in_range = d >= kWeightFloor;
  const float x = in_range ? d : 0.0f;
  const float k = static_cast<float>(static_cast<int>(x * 1.44269504f - 0.5f));  // round half away, x <= 0
  const float r = (x - k * 0.693145752f) - k * 1.42860682e-6f;
  const float p =
      1.0f + r * (1.0f + r * (0.5f + r * (0.166666667f + r * (0.0416666667f + r * (0.00833333333f +
      r * (0.00138888889f + r * (0.000198412698f + r * 0.0000248015873f)))))));
  const float scaled = p * bits_float(static_cast<uint32_t>(static_cast<int>(k) + 127) << 23);  // 2^k, k >= -116
  return in_range ? scaled : 0.0f;
}

// A weight (0..1] as a mass in units of 2^-32: sums of these are exact and
// the same in any order, so that the host and a GPU's reduction agree on
// where a nucleus ends. Weights below 2^-32 weigh nothing.
UMI_HOST_DEVICE inline uint64_t weight_mass(float w) { return static_cast<uint64_t>(w * 4294967296.0f); }

// Of `total` mass, the least a top-p nucleus must hold: ceil(top_p total),
// at least 1 and at most total. total < 2^53 (fewer than 2^21 tokens), so
// it is exact in a double and so is the product's rounding on both sides.
UMI_HOST_DEVICE inline uint64_t nucleus_target(uint64_t total, float top_p) {
  const double want = static_cast<double>(top_p) * static_cast<double>(total);
  uint64_t target = static_cast<uint64_t>(want);
  if (static_cast<double>(target) < want) ++target;
  if (target < 1) target = 1;
  return target > total ? total : target;
}

// Token i's Gumbel noise for the draw with key (lo, hi): -log(-log(U)),
// U from 32 bits of a bijective hash of i. The exponential variate is
// -log1p(-u), precise where it is small, which is where the large noise
// that lets an unlikely token win comes from. The noise falls as u grows
// and lies in [kNoiseMin, kNoiseMax].
UMI_HOST_DEVICE inline uint32_t mix(uint32_t h) {  // MurmurHash3's finalizer
  h ^= h >> 16, h *= 0x85EBCA6Bu, h ^= h >> 13, h *= 0xC2B2AE35u, h ^= h >> 16;
  return h;
}
UMI_HOST_DEVICE inline uint32_t noise_hash(uint32_t key_lo, uint32_t key_hi, uint32_t i) { return mix(mix(i * 0x9E3779B1u + key_lo) ^ key_hi); }
// h / 2^32 rounded, kept inside (0, 1); h >= b 2^24 gives u >= b / 256.
UMI_HOST_DEVICE inline float uniform(uint32_t h) {
  float u = (static_cast<float>(static_cast<int32_t>(h >> 8)) + static_cast<float>(static_cast<int32_t>(h & 0xFFu)) * 0.00390625f) *
            5.96046448e-8f;
  u = u < 1.16415322e-10f ? 1.16415322e-10f : u;  // 2^-33: never log(0)
  return u > 0.99999994f ? 0.99999994f : u;       // below 1
}
UMI_HOST_DEVICE inline float gumbel_of_uniform(float u) { return -log(-log1p(-u)); }
UMI_HOST_DEVICE inline float gumbel(uint32_t key_lo, uint32_t key_hi, uint32_t i) {
  return gumbel_of_uniform(uniform(noise_hash(key_lo, key_hi, i)));
}
// Bounds of gumbel(): -log(-log1p(-(1 - 2^-24))) and -log(2^-33), with a margin.
constexpr float kNoiseMin = -2.82f, kNoiseMax = 23.0f;

}  // namespace umi::draw
