// Few-token products on the int8 tensor cores (internal to quant_matvec.cu,
// which checks the arguments and picks this kernel or the dp4a one).
//
// mma.sync m16n8k32: a 16 x 32 tile of weights times a 32 x 8 tile of
// q8 activations, int32 sums. One Q8_0/Q4_0 block, or one 32-value
// sub-block of a K-quant block, is exactly the 32 k of one instruction, so
// its integer sum is scaled by d_w * d_x in float right after, as the CPU
// and the dp4a kernel do. The fragment layout matches the blocks' bytes: a
// thread's A registers are values 4t..4t+3 and 16+4t.. of its rows' blocks;
// for Q4_0 those are the low and high nibbles of one 32-bit load (unsigned
// 0..15 times signed q8: the u8 x s8 form; the -8 comes back as 8 * sum(q),
// as in the dp4a kernel), for Q4_K/Q5_K one nibble of two loads (the min
// comes back as m * sum(q)), for Q6_K signed six-bit values whose two
// 16-value halves have their own scales (two instructions, a half each).
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

#include "backend/cuda/kquant.cuh"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/matvec_targets.cuh"
#include "backend/cuda/quant_matvec.h"
#include "backend/cuda/split_blocks.cuh"

namespace umi::cuda::mma {

constexpr int kWarps = 8;
constexpr int kRows = 16;          // rows per group (a thread block takes 1, 2 or 4 groups)
constexpr int kMaxTokens = 64;     // tokens per launch: 8 n-tiles

__device__ inline uint32_t ld32(const void* p) { return __ldg(static_cast<const uint32_t*>(p)); }

// c += a (16 x 32, rows g and g+8) . b (32 x 8, column g); a unsigned
// (u8 x s8) or signed.
template <bool Unsigned>
__device__ inline void mma_k32(const uint32_t (&a)[4], uint32_t b0, uint32_t b1, int (&c)[4]) {
  if constexpr (Unsigned) {
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

// One row's share of a 32-value block for thread t: the bytes of values
// 4t..4t+3 (lo) and 16+4t.. (hi) as the mma's A registers, and the block's
// value = d * a - m (per unit of the activations' sum). Q6_K's 16-value
// halves have their own scales: d (lo) and d_hi.
struct Frag {
  uint32_t lo, hi;
  float d, m, d_hi;
};

// The weight formats: Frag of block b (32 values) of row r, whether the
// fragment is unsigned, whether its halves carry two scales, and whether it
// is a split Q8_0/Q4_0 block (its own scaling expression).
template <int QB>  // Q8_0 (32) and Q4_0 (16) in the split layout
struct SplitFormat {
  static constexpr bool kUnsigned = QB == 16, kTwoScales = false, kSplit = true;
  static __device__ Frag frag(const void* w, int64_t rows, int64_t bpr, int64_t r, int64_t b, int t) {
    const SplitBlocks<QB> m(w, rows * bpr);
    const unsigned char* q = m.q(r * bpr + b);
    const float d = m.d(r * bpr + b);
    if constexpr (QB == 16) {  // values 4t.. in the low nibbles, 16 + 4t.. in the high ones; stored w + 8
      constexpr uint32_t lo = 0x0F0F0F0Fu;
      const uint32_t v = ld32(q + 4 * t);
      return {v & lo, (v >> 4) & lo, d, 8.f * d, d};
    } else {
      return {ld32(q + 4 * t), ld32(q + 16 + 4 * t), d, 0.f, d};
    }
  }
};

// Q4_K/Q5_K (kquant.cuh): block b is sub-block s = b % 8 of a 256-value
// block; its values are nibble s % 2 of qs[32 (s / 2) + l], scale d * sc,
// min dmin * m.
template <bool Five>
struct KQuant45Format {
  static constexpr bool kUnsigned = true, kTwoScales = false, kSplit = false;
  static __device__ Frag frag(const void* w, int64_t /*rows*/, int64_t bpr, int64_t r, int64_t b, int t) {
    const unsigned char* blk = static_cast<const unsigned char*>(w) + (r * (bpr / 8) + b / 8) * (Five ? kQ5KBytes : kQ4KBytes);
    const int s = static_cast<int>(b & 7);
    const unsigned char* qs = blk + (Five ? 48 : 16) + 32 * (s >> 1);
    constexpr uint32_t lo = 0x0F0F0F0Fu;
    uint32_t a = (ld32(qs + 4 * t) >> (4 * (s & 1))) & lo, c = (ld32(qs + 16 + 4 * t) >> (4 * (s & 1))) & lo;
    if constexpr (Five) {
      a |= ((ld32(blk + 16 + 4 * t) >> s) & 0x01010101u) << 4;
      c |= ((ld32(blk + 32 + 4 * t) >> s) & 0x01010101u) << 4;
    }
    int sc, m;
    kscale_min(blk + 4, s, sc, m);
    const float d = half_at(blk) * static_cast<float>(sc);
    return {a, c, d, half_at(blk + 2) * static_cast<float>(m), d};
  }
};

// Q6_K (split): block b is 32 values of half h = s / 4, part k = s % 4 (s =
// b % 8): signed q - 32, a scale per 16 values.
struct KQuant6Format {
  static constexpr bool kUnsigned = false, kTwoScales = true, kSplit = false;
  static __device__ Frag frag(const void* w, int64_t rows, int64_t bpr, int64_t r, int64_t b, int t) {
    const int64_t block = r * (bpr / 8) + b / 8;
    const unsigned char* q = static_cast<const unsigned char*>(w) + block * kQ6KQuantBytes;
    const int s = static_cast<int>(b & 7), h = s >> 2, k = s & 3;
    const unsigned char* ql = q + 64 * h + 32 * (k & 1);
    const unsigned char* qh = q + 128 + 32 * h;
    auto value = [&](int at) {
      const uint32_t l = ld32(ql + at), nib = k >= 2 ? (l >> 4) & 0x0F0F0F0Fu : l & 0x0F0F0F0Fu;
      return __vsubss4(nib | (((ld32(qh + at) >> (2 * k)) & 0x03030303u) << 4), 0x20202020u);
    };
    const float d = __half2float(reinterpret_cast<const __half*>(static_cast<const unsigned char*>(w) +
                                                                   rows * (bpr / 8) * kQ6KQuantBytes)[block]);
    const signed char* sc = reinterpret_cast<const signed char*>(q + 192 + 8 * h + 2 * k);
    return {value(4 * t), value(16 + 4 * t), d * static_cast<float>(sc[0]), 0.f, d * static_cast<float>(sc[1])};
  }
};

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
  wait_for_inputs();
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
template <class W, int NT>
__device__ inline void tile_products(const void* w, int64_t rows, int64_t row0, int64_t bpr, int slice, int splits,
                                     const Tiles& x, float (&acc)[NT][4]) {
  const int lane = threadIdx.x & 31, t = lane & 3;
  // Rows past the end read the last row; their sums are dropped.
  const int64_t r0 = min(row0 + (lane >> 2), rows - 1), r1 = min(row0 + (lane >> 2) + 8, rows - 1);
#pragma unroll
  for (int n = 0; n < NT; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.f;
#pragma unroll 2
  for (int64_t b = slice; b < bpr; b += splits) {
    const Frag f0 = W::frag(w, rows, bpr, r0, b, t), f1 = W::frag(w, rows, bpr, r1, b, t);
    const int64_t tile = b * x.ntt + x.n0;
    const uint2* xq = x.q + tile * 32 + lane;
    const float4* xe = x.ds + tile * 4 + t;
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      const uint2 bq = __ldg(xq + n * 32);
      const float4 e = __ldg(xe + n * 4);  // (d, sum) of tokens 2t and 2t + 1 of the n-tile
      if constexpr (W::kTwoScales) {  // each 16-value half on its own (the other zero), scaled apart
        const uint32_t a_lo[4] = {f0.lo, f1.lo, 0u, 0u}, a_hi[4] = {0u, 0u, f0.hi, f1.hi};
        int c[4] = {0, 0, 0, 0}, ch[4] = {0, 0, 0, 0};
        mma_k32<W::kUnsigned>(a_lo, bq.x, bq.y, c);
        mma_k32<W::kUnsigned>(a_hi, bq.x, bq.y, ch);
        acc[n][0] += e.x * (f0.d * static_cast<float>(c[0]) + f0.d_hi * static_cast<float>(ch[0]));
        acc[n][1] += e.z * (f0.d * static_cast<float>(c[1]) + f0.d_hi * static_cast<float>(ch[1]));
        acc[n][2] += e.x * (f1.d * static_cast<float>(c[2]) + f1.d_hi * static_cast<float>(ch[2]));
        acc[n][3] += e.z * (f1.d * static_cast<float>(c[3]) + f1.d_hi * static_cast<float>(ch[3]));
      } else if constexpr (W::kSplit) {  // Q8_0, Q4_0: the expression these were tuned with (no spills)
        const uint32_t a[4] = {f0.lo, f1.lo, f0.hi, f1.hi};
        int c[4] = {0, 0, 0, 0};
        mma_k32<W::kUnsigned>(a, bq.x, bq.y, c);
        // Q4_0: sum((w + 8) q) - 8 sum(q); in floats, exact for |sums| < 2^24.
        const float o0 = W::kUnsigned ? 8.f * e.y : 0.f, o1 = W::kUnsigned ? 8.f * e.w : 0.f;
        acc[n][0] += f0.d * (e.x * (static_cast<float>(c[0]) - o0));
        acc[n][1] += f0.d * (e.z * (static_cast<float>(c[1]) - o1));
        acc[n][2] += f1.d * (e.x * (static_cast<float>(c[2]) - o0));
        acc[n][3] += f1.d * (e.z * (static_cast<float>(c[3]) - o1));
      } else {
        const uint32_t a[4] = {f0.lo, f1.lo, f0.hi, f1.hi};
        int c[4] = {0, 0, 0, 0};
        mma_k32<W::kUnsigned>(a, bq.x, bq.y, c);
        // d * sum(a q) - m * sum(q); in floats, exact for |sums| < 2^24.
        acc[n][0] += e.x * (f0.d * static_cast<float>(c[0]) - f0.m * e.y);
        acc[n][1] += e.z * (f0.d * static_cast<float>(c[1]) - f0.m * e.w);
        acc[n][2] += e.x * (f1.d * static_cast<float>(c[2]) - f1.m * e.y);
        acc[n][3] += e.z * (f1.d * static_cast<float>(c[3]) - f1.m * e.w);
      }
    }
  }
}

template <class W, int NT, int RW, MatvecOutput Out>
__global__ void __launch_bounds__(32 * kWarps, 2)
    matvec_kernel(MatvecTargets tg, int64_t bpr, Tiles x, int tokens) {
  wait_for_inputs();
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
  tile_products<W, NT>(mat == 1 ? tg.m[1].data : m.data, rows, row0 + kRows * group, bpr, warp % splits, splits, x, acc);
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
