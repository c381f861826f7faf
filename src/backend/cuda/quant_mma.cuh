// Few-token products on the int8 tensor cores (internal to quant_matvec.cu,
// which checks the arguments and picks this kernel or the dp4a one).
//
// mma.sync m16n8k32: a 16 x 32 tile of weights times a 32 x 8 tile of
// q8 activations, int32 sums. One Q8_0/Q4_0 block is exactly the 32 k of
// one instruction, so its integer sum is scaled by d_w * d_x in float right
// after, as the CPU and the dp4a kernel do. The fragment layout matches the
// blocks' bytes without shuffling: a thread's A registers are bytes
// 4t..4t+3 and 16+4t.. of its rows' blocks; for Q4_0 those are the low and
// high nibbles of one 32-bit load (unsigned 0..15 times signed q8: the
// u8 x s8 form; the -8 comes back as 8 * sum(q), as in the dp4a kernel).
//
// The activations are first copied into the order the fragments read
// (to_tiles): per block and 8-token n-tile, the 32 lanes' 8 bytes of B in a
// row (one 256-byte load per warp) and the 8 tokens' (d, sum) (one 64-byte
// load). Read from the row-major q8 instead, each fragment load touched 8
// rows of x: the first version spent its time there, 175 GB/s at 64 tokens.
//
// A thread block takes RW groups of 16 rows of one matrix and every token
// (8 per n-tile, up to 64): each group's warps split the row's blocks among
// them (split K, so that a 4096-row matrix still makes 2,048 warps of loads
// in flight) and add their partial sums in shared memory. More groups per
// block share the activations in L1 (the activations of 64 tokens outweigh
// 16 rows of Q4_0 eight to one); the launcher takes as many as keep the GPU
// busy. With SwiGLU, half the warps take the gate rows and half the up rows.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backend/cuda/matvec_targets.cuh"
#include "backend/cuda/quant_matvec.h"
#include "backend/cuda/split_blocks.cuh"

namespace umi::cuda::mma {

constexpr int kWarps = 8;
constexpr int kRows = 16;          // rows per group (a thread block takes 1, 2 or 4 groups)
constexpr int kMaxTokens = 64;     // tokens per launch: 8 n-tiles

__device__ inline uint32_t ld32(const void* p) { return __ldg(static_cast<const uint32_t*>(p)); }

// c += a (16 x 32, rows g and g+8) . b (32 x 8, column g); QB 16: a unsigned.
template <int QB>
__device__ inline void mma_k32(const uint32_t (&a)[4], uint32_t b0, uint32_t b1, int (&c)[4]) {
  if constexpr (QB == 16) {
    asm(
        "mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Activations in fragment order (see the top): q [blocks][n-tiles][32
// lanes] of 8 bytes, then ds [blocks][n-tiles][8 tokens] of (d, sum).
struct Tiles {
  const uint2* q = nullptr;
  const float4* ds = nullptr;  // two tokens' (d, sum) per float4
  int64_t ntt = 0;             // n-tiles in all
  int64_t n0 = 0;              // this launch's first n-tile
};

// One thread per (block, n-tile, lane); tokens past the end are zeros.
__global__ void to_tiles_kernel(const int8_t* __restrict__ q, const float2* __restrict__ ds, int64_t tokens, int64_t bpr,
                                int64_t ntt, uint2* __restrict__ tq, float2* __restrict__ tds) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= bpr * ntt * 32) return;
  const int lane = static_cast<int>(i & 31), g = lane >> 2, t = lane & 3;
  const int64_t n = (i >> 5) % ntt, b = (i >> 5) / ntt, tok = n * 8 + g;
  uint2 v = make_uint2(0u, 0u);
  if (tok < tokens) {
    const int8_t* src = q + (tok * bpr + b) * 32;
    v.x = ld32(src + 4 * t);
    v.y = ld32(src + 16 + 4 * t);
  }
  tq[i] = v;
  if (t == 0) tds[(b * ntt + n) * 8 + g] = tok < tokens ? ds[tok * bpr + b] : make_float2(0.f, 0.f);
}

// n-tiles [x.n0, x.n0 + NT) of the activations against rows [row0, row0 +
// 16) of `w` (rows in all), blocks slice, slice + splits, ... of each row:
// acc[n] holds this thread's C fragment of n-tile n, scaled to floats.
template <int QB, int NT>
__device__ inline void tile_products(const void* w, int64_t rows, int64_t row0, int64_t bpr, int slice, int splits,
                                     const Tiles& x, float (&acc)[NT][4]) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const SplitBlocks<QB> m(w, rows * bpr);
  // Rows past the end read the last row; their sums are dropped.
  const int64_t r0 = min(row0 + g, rows - 1) * bpr, r1 = min(row0 + g + 8, rows - 1) * bpr;
#pragma unroll
  for (int n = 0; n < NT; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll 2
  for (int64_t b = slice; b < bpr; b += splits) {
    uint32_t a[4];
    if constexpr (QB == 16) {
      constexpr uint32_t lo = 0x0F0F0F0Fu;
      const uint32_t w0 = ld32(m.q(r0 + b) + 4 * t), w1 = ld32(m.q(r1 + b) + 4 * t);
      a[0] = w0 & lo, a[1] = w1 & lo, a[2] = (w0 >> 4) & lo, a[3] = (w1 >> 4) & lo;
    } else {
      a[0] = ld32(m.q(r0 + b) + 4 * t), a[1] = ld32(m.q(r1 + b) + 4 * t);
      a[2] = ld32(m.q(r0 + b) + 16 + 4 * t), a[3] = ld32(m.q(r1 + b) + 16 + 4 * t);
    }
    const float d0 = m.d(r0 + b), d1 = m.d(r1 + b);
    const int64_t tile = b * x.ntt + x.n0;
    const uint2* xq = x.q + tile * 32 + lane;
    const float4* xe = x.ds + tile * 4 + t;
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      const uint2 bq = __ldg(xq + n * 32);
      const float4 e = __ldg(xe + n * 4);  // (d, sum) of tokens 2t and 2t + 1 of the n-tile
      int c[4] = {0, 0, 0, 0};
      mma_k32<QB>(a, bq.x, bq.y, c);
      // Q4_0: sum((w + 8) q) - 8 sum(q); in floats, exact for |sums| < 2^24.
      const float o0 = QB == 16 ? 8.f * e.y : 0.f, o1 = QB == 16 ? 8.f * e.w : 0.f;
      acc[n][0] += d0 * (e.x * (static_cast<float>(c[0]) - o0));
      acc[n][1] += d0 * (e.z * (static_cast<float>(c[1]) - o1));
      acc[n][2] += d1 * (e.x * (static_cast<float>(c[2]) - o0));
      acc[n][3] += d1 * (e.z * (static_cast<float>(c[3]) - o1));
    }
  }
}

template <int QB, int NT, int RW, MatvecOutput Out>
__global__ void __launch_bounds__(32 * kWarps, 2)
    matvec_kernel(MatvecTargets tg, int64_t bpr, Tiles x, int tokens) {
  constexpr int kCols = NT * 8, kStride = kCols + 8;  // padded: the eight g rows of a store fall in other banks
  constexpr int mats = Out == MatvecOutput::swiglu ? 2 : 1, units = mats * RW, splits = kWarps / units;
  static_assert(kWarps % units == 0, "warps per unit");
  __shared__ float red[kWarps][kRows][kStride];
  int j = 0;
  int64_t row0 = 0;
  if (!find_tile<Out>(tg, blockIdx.x, kRows * RW, j, row0)) return;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  // Warp -> (matrix: the tile's, or with SwiGLU gate then up; row group; slice of the blocks).
  const int unit = warp / splits, mat = unit / RW, group = unit % RW;
  const MatvecTarget m = target(tg, j);
  const int64_t rows = m.rows;
  float acc[NT][4];
  tile_products<QB, NT>(mat == 1 ? tg.m[1].data : m.data, rows, row0 + kRows * group, bpr, warp % splits, splits, x, acc);
#pragma unroll
  for (int n = 0; n < NT; ++n) {
    red[warp][g][n * 8 + 2 * t] = acc[n][0];
    red[warp][g][n * 8 + 2 * t + 1] = acc[n][1];
    red[warp][g + 8][n * 8 + 2 * t] = acc[n][2];
    red[warp][g + 8][n * 8 + 2 * t + 1] = acc[n][3];
  }
  __syncthreads();
  // Output i: row i % (16 RW) (consecutive floats of y per token), token i / (16 RW).
  for (int i = threadIdx.x; i < kRows * RW * kCols; i += 32 * kWarps) {
    const int r = i % (kRows * RW), tk = i / (kRows * RW), gr = r / kRows, rr = r % kRows;
    const int64_t row = row0 + r;
    if (row >= rows || tk >= tokens) continue;
    float s = 0.f;
#pragma unroll
    for (int w = 0; w < splits; ++w) s += red[gr * splits + w][rr][tk];
    const int64_t o = tk * rows + row;
    if constexpr (Out == MatvecOutput::swiglu) {
      float u = 0.f;
#pragma unroll
      for (int w = 0; w < splits; ++w) u += red[(RW + gr) * splits + w][rr][tk];
      tg.m[1].y[o] = u;
      m.y[o] = s / (1.f + expf(-s)) * u;
    } else if constexpr (Out == MatvecOutput::accumulate) {
      m.y[o] += s;
      if (m.also) m.also[o] = s;
    } else {
      m.y[o] = s;
    }
  }
}

}  // namespace umi::cuda::mma
