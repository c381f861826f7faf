// How Q8_0 and Q4_0 matrices sit in device memory. The file's blocks are 34
// and 18 bytes ({f16 d; quants}), so a kernel reading them in place can load
// at most 16 bits at a time. On upload each matrix is split into two arrays:
// every block's quants in the file's order (32 or 16 bytes each, 16-byte
// aligned: one or two 128-bit loads per block), then every block's f16
// scale. The same bytes as the file, blocks in the same (row-major) order:
// block i of a matrix of n blocks has its quants at base + i * quant_bytes
// and its scale at ((f16*)(base + n * quant_bytes))[i]. Every CUDA kernel
// that reads Q8_0 or Q4_0 reads this layout; the CPU reads the file's.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "format/dtype.h"

namespace umi::cuda {

// Q8_0 and Q4_0: the types that are split on upload.
bool is_split_type(DType t);
// Bytes of quants per 32-value block: 32 (Q8_0), 16 (Q4_0).
int split_quant_bytes(DType t);

// Splits blocks [first, first + count) of a matrix of `total` blocks: `src`
// holds those blocks as the file stores them (device memory, contiguous),
// `dst` is the whole matrix's split buffer (total * file block bytes).
cudaError_t split_blocks(DType t, const void* src, int64_t first, int64_t count, int64_t total, void* dst,
                         cudaStream_t stream);

}  // namespace umi::cuda
