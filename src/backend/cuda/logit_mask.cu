#include "backend/cuda/logit_mask.h"

#include <cmath>

#include "backend/cuda/launch.cuh"

namespace umi::cuda {

namespace {

__global__ void mask_logits_kernel(float* __restrict__ x, int64_t n, const uint32_t* __restrict__ allowed) {
  wait_for_inputs();
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n && !(allowed[i >> 5] >> (i & 31) & 1u)) x[i] = -INFINITY;
}

}  // namespace

cudaError_t mask_logits(float* x, int64_t n, const uint32_t* allowed, cudaStream_t stream) {
  if (!x || !allowed || n <= 0 || n >= INT32_MAX) throw Error("mask_logits: bad arguments");
  constexpr int kThreads = 256;
  launch(mask_logits_kernel, dim3(static_cast<unsigned>((n + kThreads - 1) / kThreads)), kThreads, 0, stream, x, n, allowed);
  return cudaGetLastError();
}

}  // namespace umi::cuda
