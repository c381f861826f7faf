// The CUDA backend's matrix-vector product (batch-1 decode): y[r] = row r . x
// for Q8_0 and Q4_0 weights (the blocks exactly as the file stores them) and
// F16, BF16, F32 weights (16-byte aligned), f32 activations. Columns: a
// multiple of 32.
//
// The launcher checks its inputs and enqueues on `stream`; it does not
// synchronize. Device pointers; x and y must not overlap the weights.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "format/dtype.h"

namespace umi::cuda {

struct QuantMatrix {
  DType dtype = DType::Q8_0;
  const void* data = nullptr;  // device memory: rows x row_bytes
  int64_t rows = 0, cols = 0;  // cols: a multiple of 32
};

// True for the weight types this kernel reads.
bool matvec_supports(DType t);

// Throws umi::Error (naming the problem) for bad arguments; returns the
// launch's error code otherwise.
cudaError_t matvec(const QuantMatrix& w, const float* x, float* y, cudaStream_t stream);

}  // namespace umi::cuda
