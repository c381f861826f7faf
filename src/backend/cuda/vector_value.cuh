// One element of a weight vector (norm weights, biases) in its file type,
// f32, f16 or bf16 (ops_support_vector), read by device code.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "format/dtype.h"

namespace umi::cuda {

__device__ inline float vector_value(const void* v, DType t, int64_t i) {
  if (t == DType::F16) return __half2float(static_cast<const __half*>(v)[i]);
  if (t == DType::BF16) return __uint_as_float(static_cast<unsigned>(static_cast<const uint16_t*>(v)[i]) << 16);
  return static_cast<const float*>(v)[i];
}

}  // namespace umi::cuda
