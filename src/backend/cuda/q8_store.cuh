// Quantizing one 32-value block held by a warp (lane i holds value i) into
// Q8Rows (q8_rows.h): the rule every kernel that writes q8 activations
// shares, and the CPU's (d = max|x| / 127, q = round-to-even(x * (1 / d))).
// The whole warp must call it.
#pragma once

#include "backend/cuda/q8_rows.h"

namespace umi::cuda {

__device__ inline void store_q8(float v, int64_t block, int lane, int8_t* q, float2* ds) {
  float amax = fabsf(v);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
  const int qi = __float2int_rn(__fmul_rn(v, id));
  int sum = qi;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
  q[block * 32 + lane] = static_cast<int8_t>(qi);
  if (lane == 0) ds[block] = make_float2(d, static_cast<float>(sum));
}

}  // namespace umi::cuda
