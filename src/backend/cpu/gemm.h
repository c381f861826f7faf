// The tiled quantized GEMM's contract (x86 builds implement it; see
// gemm_x86.h): y[t, r] = row r . x[t] for the leading whole tiles (8 rows,
// 16 in the AVX-512 build) of rows [row_begin, row_end) and `tokens` tokens
// of q8 activations. Returns how many rows it did; the caller does the rest.
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cpu/dot.h"

namespace umi::cpu {

// Scratch one thread needs for a matrix `cols` wide: one packed tile (the
// larger of the builds' tiles: 16 rows of 32 bytes, two scales and two mins).
inline constexpr size_t kGemmPackedSubBytes = 16 * 32 + 4 * 64;
inline size_t gemm_pack_bytes(int64_t cols) { return static_cast<size_t>(cols / 32) * kGemmPackedSubBytes; }

struct GemmArgs {
  const std::byte* w = nullptr;  // row 0 of the matrix
  size_t row_bytes = 0;
  int64_t cols = 0;
  int64_t row_begin = 0, row_end = 0;
  const Q8Block* x = nullptr;  // [tokens, cols / 32]
  int64_t tokens = 0;
  float* y = nullptr;  // y[t * y_stride + r]
  int64_t y_stride = 0;
  void* pack = nullptr;  // gemm_pack_bytes(cols), 32-byte aligned
};
using QGemmFn = int64_t (*)(const GemmArgs&);
// The fastest build's GEMM for this weight type; nullptr where there is none.
QGemmFn qgemm_function(DType t);

}  // namespace umi::cpu
