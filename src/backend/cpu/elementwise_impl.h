// Element-wise kernels of the forward pass, eight floats at a time (GCC/Clang
// vector extensions: each translation unit that includes this header builds
// them for its own instruction set, as dot_impl.h): the exponential behind
// SiLU and the attention softmax, and K/V rows into the cache's element type.
// A decode step of a 1B-shaped model runs 8,192 SiLUs and ~32 softmax rows a
// layer; through the C library's expf, one value at a time, they cost ~3% of
// the step (session 14), all of it on the critical path between products.
#pragma once

#include "backend/cpu/dot_impl.h"
#include "backend/cpu/quantize.h"

namespace umi::cpu {
namespace {

// e^x, eight at a time, within 2 ulp of the exact value wherever it is a
// normal float: x = n ln2 + r with |r| <= ln2 / 2, e^r = 1 + r + r^2 p(r)
// with Cephes' degree-5 minimax p, times 2^n as two factors 2^(n/2) built
// in the exponent bits (one would leave the floats at both ends). As the C
// library: subnormal results below x = -87.3, 0 below -104, infinity above
// 88.72; NaN stays NaN.
inline v8f exp_v8(v8f x) {
  const v8f lo = v8f{} - 104.0f, hi = v8f{} + 89.0f;
  x = x < lo ? lo : x;  // NaN compares false and passes through both
  x = x > hi ? hi : x;
  // n = round(x / ln2): adding 1.5 * 2^23 rounds to an integer in every build.
  const v8f magic = v8f{} + 12582912.0f;
  const v8f n = (x * 1.44269504088896341f + magic) - magic;
  const v8f r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // ln2 in two parts: n * ln2 exact enough
  v8f p = v8f{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const v8f er = (p * (r * r) + r) + 1.0f;
  const v8i ni = __builtin_convertvector(n, v8i), n1 = ni >> 1, n2 = ni - n1;  // each in [-75, 64]
  const v8i b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
  v8f s1, s2;
  std::memcpy(&s1, &b1, sizeof s1);
  std::memcpy(&s2, &b2, sizeof s2);
  return er * s1 * s2;
}

// gate[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + e^-g).
void impl_swiglu(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const v8f g = load_f32(gate + i), u = load_f32(up + i);
    const v8f y = g / (1.0f + exp_v8(-g)) * u;
    std::memcpy(gate + i, &y, sizeof y);
  }
  for (; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

// s[i] = e^(s[i] - shift); returns the sum of the new s.
float impl_exp_sum(float* s, int64_t n, float shift) {
  v8f acc{};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const v8f e = exp_v8(load_f32(s + i) - shift);
    std::memcpy(s + i, &e, sizeof e);
    acc += e;
  }
  float sum = hsum(acc);
  for (; i < n; ++i) sum += (s[i] = std::exp(s[i] - shift));
  return sum;
}

// One K or V row into the cache's element type: F16 by one conversion
// instruction per 8 values where the build has F16C (the x86 builds; round to
// nearest even, as f32_to_f16), by f32_to_f16 elsewhere; Q8_0 and F32 as
// quantize_row.
void impl_kv_from_f32(const float* x, DType t, int64_t n, std::byte* row) {
  if (t != DType::F16) return quantize_row(t, x, n, row);
  int64_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(row + 2 * i), h);
  }
#endif
  for (; i < n; ++i) {  // the tail, and every value without F16C: no dtype lookup per value as quantize_row's
    const uint16_t h = f32_to_f16(x[i]);
    std::memcpy(row + 2 * i, &h, 2);
  }
}

}  // namespace
}  // namespace umi::cpu
