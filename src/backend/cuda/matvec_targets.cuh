// Device-side lookups in a MatvecTargets kernel parameter, shared by the
// integer product kernels (quant_matvec.cu, quant_mma.cuh). Indexing the
// parameter's array with a run-time index makes the compiler copy the whole
// struct to local memory in every thread (104 bytes of stack: the batch-1
// store and accumulate products ran at half the bandwidth of the SwiGLU one,
// which never indexed it); these select with compile-time indices instead.
#pragma once

#include <cstdint>

#include "backend/cuda/quant_matvec.h"

namespace umi::cuda {

// tg.m[j].
__device__ inline MatvecTarget target(const MatvecTargets& tg, int j) {
  MatvecTarget m = tg.m[0];
#pragma unroll
  for (int i = 1; i < kMaxMatvecTargets; ++i)
    if (j == i) m = tg.m[i];
  return m;
}

// Which matrix and tile of `tile_rows` rows a thread block takes: the
// targets' tiles in order (store, accumulate; each matrix starts a new
// tile), or the gate matrix's (swiglu). False past the last tile.
template <MatvecOutput Out>
__device__ inline bool find_tile(const MatvecTargets& tg, int64_t tile, int64_t tile_rows, int& j, int64_t& row0) {
  j = 0;
  if constexpr (Out != MatvecOutput::swiglu) {
#pragma unroll
    for (int i = 0; i < kMaxMatvecTargets; ++i) {
      if (i >= tg.count) return false;
      const int64_t n = (tg.m[i].rows + tile_rows - 1) / tile_rows;
      if (tile < n) break;
      tile -= n;
      ++j;
    }
    if (j >= tg.count) return false;
  } else if (tile * tile_rows >= tg.m[0].rows) {
    return false;
  }
  row0 = tile * tile_rows;
  return true;
}

// Thread blocks of `tile_rows` rows for all targets (as find_tile counts them).
inline int64_t tile_count(const MatvecTargets& tg, MatvecOutput out, int64_t tile_rows) {
  int64_t count = 0;
  for (int j = 0; j < (out == MatvecOutput::swiglu ? 1 : tg.count); ++j) count += (tg.m[j].rows + tile_rows - 1) / tile_rows;
  return count;
}

}  // namespace umi::cuda
