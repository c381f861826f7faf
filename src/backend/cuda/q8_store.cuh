// Quantizing one 32-value block held by a warp (lane i holds value i) into
// Q8Rows (q8_rows.h): the rule every kernel that writes q8 activations
// shares, and the CPU's (d = max|x| / 127, q = round-to-even(x * (1 / d))).
// The whole warp must call it.
#pragma once

#include "backend/cuda/q8_rows.h"

namespace umi::cuda {

// The rule itself: the scale d of a block whose largest magnitude is amax,
// and one value rounded with 1 / d (the product rounded, then rounded to
// the nearest integer, ties to even: never contracted into one rounding).
__device__ inline float q8_scale(float amax) { return amax / 127.0f; }
__device__ inline int q8_round(float v, float d) { return __float2int_rn(__fmul_rn(v, d != 0.0f ? 1.0f / d : 0.0f)); }

__device__ inline void store_q8(float v, int64_t block, int lane, int8_t* q, float2* ds) {
  float amax = fabsf(v);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  const float d = q8_scale(amax);
  const int qi = q8_round(v, d);
  int sum = qi;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  q[block * 32 + lane] = static_cast<int8_t>(qi);
  if (lane == 0) ds[block] = make_float2(d, static_cast<float>(sum));
}

// The same rule for a block held as four values per lane by 8 consecutive
// lanes (lane & 7 == 0 holds values 0-3): the whole warp must call it, each
// 8-lane group storing its own block when `store` (the same for all 8).
__device__ inline void store_q8x4(float4 v, bool store, int64_t block, int lane, int8_t* q, float2* ds) {
  float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
#pragma unroll
  for (int off = 4; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  const float d = q8_scale(amax);
  const int a = q8_round(v.x, d), b = q8_round(v.y, d), c = q8_round(v.z, d), e = q8_round(v.w, d);
  int sum = a + b + c + e;
#pragma unroll
  for (int off = 4; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  const char4 packed = make_char4(static_cast<signed char>(a), static_cast<signed char>(b), static_cast<signed char>(c),
                                  static_cast<signed char>(e));
  if (!store) return;
  reinterpret_cast<char4*>(q + block * 32)[lane & 7] = packed;
  if ((lane & 7) == 0) ds[block] = make_float2(d, static_cast<float>(sum));
}

}  // namespace umi::cuda
