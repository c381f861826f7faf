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

// Q5_0, Q4_1 and Q5_1 have no kernels of their own on the device: upload
// rewrites them into a type that has. Q5_0 (d (q - 16), q < 32) becomes Q8_0,
// exactly (int8 q - 16 with the same d; 34 bytes a block instead of 22): the
// integer products read it. Q4_1 and Q5_1 (d q + m) become F16, each value
// rounded once (relative error under 2^-11; 64 bytes a block instead of 20
// or 24): the float products read it. IQ4_NL becomes Q8_0 exactly (its
// levels are int8), IQ4_XS Q8_0 with each 32 values' scale d x (ls - 32)
// rounded to f16 once (2x the bytes); Q3_K becomes Q6_K exactly (q + 32
// and the scales minus 32 fit its fields; 1.9x), Q2_K F16 (6.1x; its mins
// fit no integer type here). Every other type stays as it is.
DType device_dtype(DType file);
// Types whose blocks a kernel rewrites on upload (split_blocks): the split
// types and those device_dtype changes.
bool is_rewritten_on_upload(DType t);
// Device bytes of a matrix of `blocks` blocks of file type t.
size_t device_matrix_bytes(DType t, int64_t blocks);

// Rewrites blocks [first, first + count) of a matrix of `total` blocks of
// file type t: `src` holds those blocks as the file stores them (device
// memory, contiguous), `dst` is the whole matrix's buffer
// (device_matrix_bytes(t, total)) in device_dtype(t)'s layout: split for
// Q8_0/Q4_0/Q6_K and for Q5_0/IQ4_NL/IQ4_XS (as Q8_0) and Q3_K (as Q6_K), f16
// values in order for Q4_1/Q5_1/Q2_K.
cudaError_t split_blocks(DType t, const void* src, int64_t first, int64_t count, int64_t total, void* dst,
                         cudaStream_t stream);

}  // namespace umi::cuda
