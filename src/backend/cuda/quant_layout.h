// How quantized matrices sit in device memory. The file's Q8_0 and Q4_0
// blocks are 34 and 18 bytes ({f16 d; quants}) and Q6_K's 210 ({quants;
// f16 d}), so a kernel reading them in place could load at most 16 bits at a
// time. On upload each such matrix is split into two arrays: every block's
// quants in the file's order (32, 16 or 208 bytes each, 16-byte aligned:
// 128-bit loads), then every block's f16 scale. The same bytes as the file,
// blocks in the same (row-major) order: block i of a matrix of n blocks has
// its quants at base + i * quant_bytes and its scale at
// ((f16*)(base + n * quant_bytes))[i]. Every CUDA kernel that reads these
// types reads this layout; the CPU reads the file's. Q4_K (144 bytes) and
// Q5_K (176) blocks are whole 16-byte multiples with their quants at 16-byte
// offsets: uploaded as they are (kquant.cuh reads them).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "format/dtype.h"

namespace umi::cuda {

// Q8_0, Q4_0 and Q6_K: the types that are split on upload.
bool is_split_type(DType t);
// Bytes of quants per block: 32 (Q8_0), 16 (Q4_0), 208 (Q6_K, 256 values).
int split_quant_bytes(DType t);

// Splits blocks [first, first + count) of a matrix of `total` blocks: `src`
// holds those blocks as the file stores them (device memory, contiguous),
// `dst` is the whole matrix's split buffer (total * file block bytes).
cudaError_t split_blocks(DType t, const void* src, int64_t first, int64_t count, int64_t total, void* dst,
                         cudaStream_t stream);

}  // namespace umi::cuda
