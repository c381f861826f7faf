// Constrained outputs (JSON mode, schemas) on the device: a row's refused
// tokens set to -infinity where the logits are, so that argmax and top-k
// select among the allowed ones and the row never crosses to the host.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace umi::cuda {

// x[i] = -inf for every i < n whose bit (bit i % 32 of allowed[i / 32],
// device memory) is clear.                                            [n]
cudaError_t mask_logits(float* x, int64_t n, const uint32_t* allowed, cudaStream_t stream);

}  // namespace umi::cuda
