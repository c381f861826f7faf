// Device-side view of a split Q8_0/Q4_0 matrix (layout in quant_layout.h).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace umi::cuda {

template <int QuantBytes>
struct SplitBlocks {
  const unsigned char* quants;  // [blocks, QuantBytes]
  const __half* scales;         // [blocks]

  __host__ __device__ SplitBlocks(const void* base, int64_t total_blocks)
      : quants(static_cast<const unsigned char*>(base)),
        scales(reinterpret_cast<const __half*>(static_cast<const unsigned char*>(base) + total_blocks * QuantBytes)) {}
  __device__ const unsigned char* q(int64_t block) const { return quants + block * QuantBytes; }
  __device__ float d(int64_t block) const { return __half2float(scales[block]); }
};

}  // namespace umi::cuda
