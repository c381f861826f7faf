// Activations quantized for the integer dot products of the Q8_0/Q4_0
// kernels: per 32 consecutive values one float scale d = max|x| / 127, the
// int8 q = round-to-even(x / d), and the sum of the 32 q (Q4_0 stores
// unsigned nibbles w + 8: its dot product is sum(w*q) - 8 * sum(q)). The same
// rounding as the CPU backend's quantize_activations, so both devices
// multiply the same integers.
//
// Laid out over the flat [rows * cols] values (cols a multiple of 32), so a
// row's blocks are contiguous and block b of row r is r * cols / 32 + b.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace umi::cuda {

struct Q8Rows {
  int8_t* q = nullptr;   // [n]
  float2* ds = nullptr;  // [n / 32]: (d, sum of the block's q)
  int64_t n = 0;         // values: rows * cols
  // Scratch for the tensor-core products (quant_mma.cuh), which first copy
  // q and ds into the order their fragments read: q8_tiles_bytes(rows,
  // cols) bytes, 16-byte aligned. Without it, products use dp4a.
  void* tiles = nullptr;
  // Set: one row (n values) of an RMSNorm still missing its 1 / rms factor,
  // as the product that wrote the row leaves it (quant_matvec.h,
  // NextNorm): the blocks hold x * w quantized, and rms_sums[n / 32] the
  // sums of x^2 per block. Products of it multiply their results by
  // 1 / sqrt(sum(rms_sums) / n + rms_eps).
  const float* rms_sums = nullptr;
  float rms_eps = 0.f;
};

// The tensor-core order of `rows` rows of `cols` values: rows padded to
// whole 8-row tiles, 32 bytes of q and a float2 per 32 values.
inline int64_t q8_tiles_bytes(int64_t rows, int64_t cols) { return (rows + 7) / 8 * 8 * cols / 32 * 40; }

}  // namespace umi::cuda
