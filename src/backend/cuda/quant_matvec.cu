// Float weights (F16, BF16, F32), one token: one warp per row; four lanes
// per 32-value "block", so a warp covers eight consecutive blocks per step:
// its weight loads sweep the row front to back and its activation loads are
// 1 KB contiguous (16-byte loads). Four rows per thread block.
//
// Q8_0/Q4_0: one warp per row, one lane per block (split layout: a lane's
// block is one or two 128-bit loads, a warp's load 512 B or 1 KB
// contiguous), the activations as q8 blocks (32 bytes and a float2 per
// block) and dp4a on the integers. The first versions read the file's
// blocks with f32 activations: Q4_0 reached 55% of the read bandwidth, bound
// by the instructions to unpack nibbles and convert them to float (the
// integer-to-float conversion runs at a quarter of the FMA rate), not by
// bytes. dp4a does four weights per instruction without converting.
#include "backend/cuda/quant_matvec.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "backend/cuda/kquant.cuh"
#include "backend/cuda/matvec_targets.cuh"
#include "backend/cuda/quant_layout.h"
#include "backend/cuda/quant_mma.cuh"
#include "backend/cuda/q8_store.cuh"
#include "backend/cuda/vector_value.cuh"
#include "backend/cuda/split_blocks.cuh"
#include "backend/cuda/launch.cuh"
#include "core/error.h"

namespace umi::cuda {

namespace {

constexpr int kRowsPerBlock = 4;

__device__ inline float dot4(float4 x, float a, float b, float c, float d) { return x.x * a + x.y * b + x.z * c + x.w * d; }

// 16-bit floats: a "block" is 32 values (64 bytes); part k is one 16-byte
// load of 8 values.
__device__ inline float bf16_lo(unsigned w) { return __uint_as_float(w << 16); }
__device__ inline float bf16_hi(unsigned w) { return __uint_as_float(w & 0xFFFF0000u); }
__device__ inline float part_dot_bf16(const unsigned char* b, int k, const float* x) {
  const uint4 w = __ldg(reinterpret_cast<const uint4*>(b) + k);
  const float4* xv = reinterpret_cast<const float4*>(x + 8 * k);
  const float4 x0 = __ldg(xv), x1 = __ldg(xv + 1);
  return dot4(x0, bf16_lo(w.x), bf16_hi(w.x), bf16_lo(w.y), bf16_hi(w.y)) +
         dot4(x1, bf16_lo(w.z), bf16_hi(w.z), bf16_lo(w.w), bf16_hi(w.w));
}
__device__ inline float2 half2f(unsigned w) { return __half22float2(*reinterpret_cast<const __half2*>(&w)); }
__device__ inline float part_dot_f16(const unsigned char* b, int k, const float* x) {
  const uint4 w = __ldg(reinterpret_cast<const uint4*>(b) + k);
  const float4* xv = reinterpret_cast<const float4*>(x + 8 * k);
  const float4 x0 = __ldg(xv), x1 = __ldg(xv + 1);
  const float2 a = half2f(w.x), c = half2f(w.y), d = half2f(w.z), e = half2f(w.w);
  return dot4(x0, a.x, a.y, c.x, c.y) + dot4(x1, d.x, d.y, e.x, e.y);
}
// f32: part k is 8 values, two 16-byte loads.
__device__ inline float part_dot_f32(const unsigned char* b, int k, const float* x) {
  const float4* w = reinterpret_cast<const float4*>(b) + 2 * k;
  const float4* xv = reinterpret_cast<const float4*>(x + 8 * k);
  const float4 w0 = __ldg(w), w1 = __ldg(w + 1), x0 = __ldg(xv), x1 = __ldg(xv + 1);
  return dot4(x0, w0.x, w0.y, w0.z, w0.w) + dot4(x1, w1.x, w1.y, w1.z, w1.w);
}

// The first steps' weights of row r into L2 (before the wait: weights are
// never written by a kernel).
template <int BlockBytes>
__device__ inline void prefetch_row(const unsigned char* r, int64_t blocks, int lane) {
  const int part = lane & 3;
#pragma unroll
  for (int64_t b = lane >> 2; b < 32 && b < blocks; b += 8)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(r + b * BlockBytes + part * (BlockBytes / 4)));
}

// Row r . x, summed over the warp. Four steps unrolled with their own sums:
// four steps' loads are in flight at once (a 4096-column row is only 16
// steps; one at a time left small matrices latency-bound at 12-15 us).
template <int BlockBytes, float (*PartDot)(const unsigned char*, int, const float*)>
__device__ inline float float_row_dot(const unsigned char* r, int64_t blocks, const float* __restrict__ x, int lane) {
  const int part = lane & 3;
  float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
  int64_t b = lane >> 2;
  for (; b + 24 < blocks; b += 32) {
    s0 += PartDot(r + b * BlockBytes, part, x + b * 32);
    s1 += PartDot(r + (b + 8) * BlockBytes, part, x + (b + 8) * 32);
    s2 += PartDot(r + (b + 16) * BlockBytes, part, x + (b + 16) * 32);
    s3 += PartDot(r + (b + 24) * BlockBytes, part, x + (b + 24) * 32);
  }
  for (; b < blocks; b += 8) s0 += PartDot(r + b * BlockBytes, part, x + b * 32);
  float s = (s0 + s1) + (s2 + s3);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  return s;
}

// One token, float weights, the integer kernel's targets and outputs (one
// launch for q, k and v; gate and up with their SwiGLU; the residual add).
template <int BlockBytes, float (*PartDot)(const unsigned char*, int, const float*), MatvecOutput Out>
__global__ void __launch_bounds__(32 * kRowsPerBlock) matvec_kernel(MatvecTargets tg, int64_t blocks, const float* __restrict__ x) {
  const int lane = threadIdx.x & 31;
  int j = 0;
  int64_t row0 = 0;
  if (!find_tile<Out>(tg, blockIdx.x, kRowsPerBlock, j, row0)) return;
  const MatvecTarget m = target(tg, j);
  const int64_t row = row0 + (threadIdx.x >> 5);
  if (row >= m.rows) return;
  const auto* r = static_cast<const unsigned char*>(m.data) + row * blocks * BlockBytes;
  const auto* ru = Out == MatvecOutput::swiglu ? static_cast<const unsigned char*>(tg.m[1].data) + row * blocks * BlockBytes
                                               : nullptr;  // the up row
  prefetch_row<BlockBytes>(r, blocks, lane);
  if constexpr (Out == MatvecOutput::swiglu) prefetch_row<BlockBytes>(ru, blocks, lane);
  wait_for_inputs();
  const float s = float_row_dot<BlockBytes, PartDot>(r, blocks, x, lane);
  if constexpr (Out == MatvecOutput::swiglu) {
    const float u = float_row_dot<BlockBytes, PartDot>(ru, blocks, x, lane);
    if (lane == 0) {
      tg.m[1].y[row] = u;
      m.y[row] = s / (1.f + expf(-s)) * u;
    }
  } else if constexpr (Out == MatvecOutput::accumulate) {
    if (lane == 0) {
      m.y[row] += s;
      if (m.also) m.also[row] = s;
    }
  } else if (lane == 0) {
    m.y[row] = s;
  }
}

template <int BlockBytes, float (*PartDot)(const unsigned char*, int, const float*)>
void launch_float(const MatvecTargets& tg, int64_t cols, const float* x, MatvecOutput out, cudaStream_t stream) {
  const int64_t blocks = cols / 32;
  const dim3 grid(static_cast<unsigned>(tile_count(tg, out, kRowsPerBlock))), block(32 * kRowsPerBlock);
  if (out == MatvecOutput::store) launch(matvec_kernel<BlockBytes, PartDot, MatvecOutput::store>, grid, block, 0, stream, tg, blocks, x);
  else if (out == MatvecOutput::accumulate)
    launch(matvec_kernel<BlockBytes, PartDot, MatvecOutput::accumulate>, grid, block, 0, stream, tg, blocks, x);
  else launch(matvec_kernel<BlockBytes, PartDot, MatvecOutput::swiglu>, grid, block, 0, stream, tg, blocks, x);
}


// ---- Q8_0 / Q4_0 on q8 activations -----------------------------------------

// One block's integer dot product with the activation block `a` (32 int8 as
// two int4), scaled: d_w * d_x * sum. Q4_0: the quants' int j holds values
// 4j..4j+3 in its low nibbles and 16+4j.. in its high ones.
template <int QB>
__device__ inline float block_dot(const int4 w0, const int4 w1, float dw, const int8_t* xq, float2 ds) {
  const int4 a0 = __ldg(reinterpret_cast<const int4*>(xq)), a1 = __ldg(reinterpret_cast<const int4*>(xq) + 1);
  int s;
  if constexpr (QB == 32) {
    s = __dp4a(w0.x, a0.x, 0);
    s = __dp4a(w0.y, a0.y, s);
    s = __dp4a(w0.z, a0.z, s);
    s = __dp4a(w0.w, a0.w, s);
    s = __dp4a(w1.x, a1.x, s);
    s = __dp4a(w1.y, a1.y, s);
    s = __dp4a(w1.z, a1.z, s);
    s = __dp4a(w1.w, a1.w, s);
  } else {
    constexpr int m = 0x0F0F0F0F;
    s = __dp4a(w0.x & m, a0.x, 0);
    s = __dp4a(w0.y & m, a0.y, s);
    s = __dp4a(w0.z & m, a0.z, s);
    s = __dp4a(w0.w & m, a0.w, s);
    s = __dp4a((w0.x >> 4) & m, a1.x, s);
    s = __dp4a((w0.y >> 4) & m, a1.y, s);
    s = __dp4a((w0.z >> 4) & m, a1.z, s);
    s = __dp4a((w0.w >> 4) & m, a1.w, s);
    s -= 8 * static_cast<int>(ds.y);
  }
  return dw * ds.x * static_cast<float>(s);
}

template <int QB>
struct LoadedBlock {
  int4 w0, w1;
  float d;
};

template <int QB>
__device__ inline LoadedBlock<QB> load_block(const SplitBlocks<QB>& m, int64_t block) {
  const int4* q = reinterpret_cast<const int4*>(m.q(block));
  LoadedBlock<QB> b;
  b.w0 = __ldg(q);
  b.w1 = QB == 32 ? __ldg(q + 1) : b.w0;
  b.d = m.d(block);
  return b;
}

// This lane's share of a pending RMSNorm's sums of squares (Q8Rows::rms_sums,
// n of them): every lane the same blocks in the same order, so every warp's
// total is the same.
__device__ inline float rms_share(const float* sums, int64_t n, int lane) {
  float s = 0.f;
  for (int64_t j = lane; j < n; j += 32) s += __ldcg(sums + j);  // from L2: the kernel before wrote them
  return s;
}

// Row `row` of a split matrix against tokens [t0, t0 + NT) of x: this
// lane's share of each token's dot product (the warp sums them). NT tokens
// share each weight load; several blocks' loads are issued before their
// arithmetic so that enough bytes are in flight. rms_sums (optional): its
// share into rms_part, loaded with the first round's x.
template <int QB, int NT>
__device__ inline void row_dot(const void* w, int64_t rows, int64_t row, int64_t bpr, int lane, const int8_t* __restrict__ xq,
                               const float2* __restrict__ xds, int64_t t0, int64_t tokens, float (&acc)[NT],
                               const float* rms_sums, float& rms_part) {
  const SplitBlocks<QB> m(w, rows * bpr);
  const int64_t first = row * bpr, cols = bpr * 32;
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.f;
  // U blocks per lane in flight per round, the last round's predicated off
  // past the row's end: a 14336-column row is four rounds of four (it was
  // three rounds of four and two single blocks, each waited out in turn).
  // Eight a round on those rows was slower in the decode step (15.1 -> 19.1
  // us): 96 registers left too few warps resident.
  constexpr int U = 4;
  for (int64_t b = lane; b < bpr; b += 32 * U) {
    LoadedBlock<QB> lb[U];
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (b + 32 * u < bpr) lb[u] = load_block(m, first + b + 32 * u);
    wait_for_inputs();  // the weights are in flight; now x may be read (the first round overlaps the kernel before)
    if (rms_sums && b == lane) rms_part = rms_share(rms_sums, bpr, lane);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if (t0 + t >= tokens) break;
      const int64_t xt = (t0 + t) * cols, dt = (t0 + t) * bpr;
#pragma unroll
      for (int u = 0; u < U; ++u)
        if (b + 32 * u < bpr)
          acc[t] += block_dot<QB>(lb[u].w0, lb[u].w1, lb[u].d, xq + xt + (b + 32 * u) * 32, xds[dt + b + 32 * u]);
    }
  }
#pragma unroll
  for (int t = 0; t < NT; ++t)
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], off);
}

// Row `row` of a K-quant matrix (kquant.cuh), as row_dot above: lanes take
// the row's tasks (sub-block pairs or halves of 256-value blocks) in turn,
// U of them in flight a round.
template <class K, int NT>
__device__ inline void kquant_row_dot(const void* w, int64_t rows, int64_t row, int64_t bpr, int lane,
                                      const int8_t* __restrict__ xq, const float2* __restrict__ xds, int64_t t0, int64_t tokens,
                                      float (&acc)[NT], const float* rms_sums, float& rms_part) {
  const int64_t spr = bpr / 8, tasks = spr * K::kTasks, cols = bpr * 32;
  constexpr int U = K::kUnroll, kBlocksPerTask = K::kValues / 32;
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.f;
  for (int64_t i = lane; i < tasks; i += 32 * U) {
    typename K::Loaded lt[U];
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (i + 32 * u < tasks)
        lt[u] = K::load(w, rows * spr, row * spr + (i + 32 * u) / K::kTasks, static_cast<int>((i + 32 * u) % K::kTasks));
    wait_for_inputs();
    if (rms_sums && i == lane) rms_part = rms_share(rms_sums, bpr, lane);
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if (t0 + t >= tokens) break;
      const int64_t xt = (t0 + t) * cols, dt = (t0 + t) * bpr;
#pragma unroll
      for (int u = 0; u < U; ++u)
        if (i + 32 * u < tasks) {
          const int64_t xb = (i + 32 * u) * kBlocksPerTask;
          acc[t] += K::dot(lt[u], xq + xt + xb * 32, xds + dt + xb);
        }
    }
  }
#pragma unroll
  for (int t = 0; t < NT; ++t)
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], off);
}

// The weight formats of the dp4a kernel: a row's share of dot products.
template <int QB>
struct SplitRows {
  template <int NT>
  static __device__ void row_dot(const void* w, int64_t rows, int64_t row, int64_t bpr, int lane, const int8_t* xq,
                                 const float2* xds, int64_t t0, int64_t tokens, float (&acc)[NT], const float* rms_sums,
                                 float& rms_part) {
    umi::cuda::row_dot<QB, NT>(w, rows, row, bpr, lane, xq, xds, t0, tokens, acc, rms_sums, rms_part);
  }
};
template <class K>
struct KQuantRows {
  template <int NT>
  static __device__ void row_dot(const void* w, int64_t rows, int64_t row, int64_t bpr, int lane, const int8_t* xq,
                                 const float2* xds, int64_t t0, int64_t tokens, float (&acc)[NT], const float* rms_sums,
                                 float& rms_part) {
    kquant_row_dot<K, NT>(w, rows, row, bpr, lane, xq, xds, t0, tokens, acc, rms_sums, rms_part);
  }
};

// A kernel's part in an RMSNorm split across two products (NextNorm):
// none, applying its factor to the results (apply: x.rms_sums), or making
// the next one's blocks (make: accumulate, 32 rows a thread block).
// Compile-time: the batch-1 kernels' registers (48-56) rose to 64 with both
// parts behind run-time flags.
enum class NormPart { none, apply, make };

// One warp per output row, RPB rows per thread block: the targets' rows in
// turn (store, accumulate; each starts a new thread block), or gate and up
// rows side by side (swiglu: y0 = silu(gate row) * up row).
template <class R, int NT, MatvecOutput Out, NormPart Norm = NormPart::none, int RPB = kRowsPerBlock>
__global__ void __launch_bounds__(32 * RPB)
    matvec_q8_kernel(MatvecTargets tg, int64_t bpr, const int8_t* __restrict__ xq, const float2* __restrict__ xds, int64_t tokens,
                     const float* rms_sums, float rms_eps, NextNorm next) {
  // No wait here: row_dot waits once its first weights are loading (weights
  // are never written by a kernel). Only lane 0, which always has a first
  // block and so has waited, writes.
  static_assert(Norm != NormPart::make || (RPB == 32 && NT == 1 && Out == MatvecOutput::accumulate), "a norm's blocks are 32 rows");
  __shared__ float new_x[RPB];  // make: the block's rows of x after the add
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int j = 0;
  int64_t row0 = 0;
  if (!find_tile<Out>(tg, blockIdx.x, RPB, j, row0)) return;
  const MatvecTarget m = target(tg, j);
  const int64_t row = row0 + warp;
  if (row >= m.rows) return;  // never with make: whole 32-row blocks
  float norm_w = 0.f;  // make: the next norm's weight for row row0 + lane (weights: before the wait)
  if constexpr (Norm == NormPart::make) {
    if (warp == 0) norm_w = vector_value(next.w, next.dtype, row0 + lane);
  }
  for (int64_t t0 = 0; t0 < tokens; t0 += NT) {
    float acc[NT];
    float rms_part = -1.f;  // apply: this lane's share of the norm's sums, once loaded
    R::template row_dot<NT>(m.data, m.rows, row, bpr, lane, xq, xds, t0, tokens, acc,
                            Norm == NormPart::apply ? rms_sums : nullptr, rms_part);
    float up[NT];
    if constexpr (Out == MatvecOutput::swiglu) {
      float unused;
      R::template row_dot<NT>(tg.m[1].data, m.rows, row, bpr, lane, xq, xds, t0, tokens, up, nullptr, unused);
    }
    if constexpr (Norm == NormPart::apply) {  // one token (the launcher checks)
      if (rms_part < 0.f) {  // a lane past a short row's last block neither waited nor loaded
        wait_for_inputs();
        rms_part = rms_share(rms_sums, bpr, lane);
      }
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) rms_part += __shfl_xor_sync(0xffffffffu, rms_part, off);
      const float r = rsqrtf(rms_part / static_cast<float>(bpr * 32) + rms_eps);
      acc[0] *= r;
      if constexpr (Out == MatvecOutput::swiglu) up[0] *= r;
    }
    if (lane != 0) continue;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
      if (t0 + t >= tokens) break;
      const int64_t i = (t0 + t) * m.rows + row;
      if constexpr (Out == MatvecOutput::swiglu) {
        tg.m[1].y[i] = up[t];  // a compile-time index: no copy
        m.y[i] = acc[t] / (1.f + expf(-acc[t])) * up[t];
      } else if constexpr (Out == MatvecOutput::accumulate) {
        const float x = m.y[i] + acc[t];
        m.y[i] = x;
        if (m.also) m.also[i] = acc[t];
        if constexpr (Norm == NormPart::make) new_x[warp] = x;
      } else {
        m.y[i] = acc[t];
      }
    }
  }
  if constexpr (Norm == NormPart::make) {  // the block's 32 rows of x: one block of the next norm
    __syncthreads();
    if (warp != 0) return;
    const float x = new_x[lane];
    store_q8(x * norm_w, row0 / 32, lane, next.q8.q, next.q8.ds);
    float ss = x * x;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    if (lane == 0) next.sums[row0 / 32] = ss;
  }
}

// One warp per 32-value block.
__global__ void quantize_q8_kernel(const float* __restrict__ x, int64_t blocks, int8_t* __restrict__ q,
                                   float2* __restrict__ ds) {
  wait_for_inputs();
  const int64_t b = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) >> 5;
  if (b >= blocks) return;
  const int lane = threadIdx.x & 31;
  store_q8(x[b * 32 + lane], b, lane, q, ds);
}

template <class R, MatvecOutput Out>
void launch_dp4a(const MatvecTargets& tg, int64_t cols, const Q8Rows& x, int64_t tokens, const NextNorm& next, cudaStream_t stream) {
  const int64_t bpr = cols / 32;
  const dim3 grid(static_cast<unsigned>(tile_count(tg, Out, kRowsPerBlock))), block(32 * kRowsPerBlock);
  auto go = [&](auto kernel) { launch(kernel, grid, block, 0, stream, tg, bpr, x.q, x.ds, tokens, x.rms_sums, x.rms_eps, next); };
  if constexpr (Out == MatvecOutput::accumulate) {
    if (next.q8.q) {  // one token (the launcher checks): 32 rows a block, so that a block quantizes its own rows
      launch(matvec_q8_kernel<R, 1, Out, NormPart::make, 32>, static_cast<unsigned>(tile_count(tg, Out, 32)), 32 * 32, 0, stream,
             tg, bpr, x.q, x.ds, tokens, x.rms_sums, x.rms_eps, next);
      return;
    }
  }
  if (tokens == 1 && x.rms_sums) go(matvec_q8_kernel<R, 1, Out, NormPart::apply>);
  else if (tokens == 1) go(matvec_q8_kernel<R, 1, Out>);
  else if (tokens == 2) go(matvec_q8_kernel<R, 2, Out>);
  else if (tokens <= 4) go(matvec_q8_kernel<R, 4, Out>);
  else go(matvec_q8_kernel<R, 8, Out>);
}

template <class R>
void launch_dp4a(const MatvecTargets& tg, int64_t cols, const Q8Rows& x, int64_t tokens, MatvecOutput out, const NextNorm& next,
                 cudaStream_t stream) {
  if (out == MatvecOutput::store) launch_dp4a<R, MatvecOutput::store>(tg, cols, x, tokens, next, stream);
  else if (out == MatvecOutput::accumulate) launch_dp4a<R, MatvecOutput::accumulate>(tg, cols, x, tokens, next, stream);
  else launch_dp4a<R, MatvecOutput::swiglu>(tg, cols, x, tokens, next, stream);
}

// Tensor cores: the activations into fragment order once, then up to 64
// tokens a launch (n-tiles of 8 tokens rounded up to 1, 2, 4, 6 or 8 of
// them), with as many 16-row groups per thread block (RW) as still leave
// 200 thread blocks to run (a wave and a half on the H100's 132 SMs).
template <class W, int NT, MatvecOutput Out>
void launch_mma_rw(const MatvecTargets& tg, int64_t bpr, const mma::Tiles& x, int n, cudaStream_t stream) {
  auto tiles = [&](int64_t rw) { return tile_count(tg, Out, mma::kRows * rw); };
  const dim3 block(32 * mma::kWarps);
  if (tiles(4) >= 200) launch(mma::matvec_kernel<W, NT, 4, Out>, static_cast<unsigned>(tiles(4)), block, 0, stream, tg, bpr, x, n);
  else if (tiles(2) >= 200) launch(mma::matvec_kernel<W, NT, 2, Out>, static_cast<unsigned>(tiles(2)), block, 0, stream, tg, bpr, x, n);
  else launch(mma::matvec_kernel<W, NT, 1, Out>, static_cast<unsigned>(tiles(1)), block, 0, stream, tg, bpr, x, n);
}

template <class W, MatvecOutput Out>
void launch_mma(const MatvecTargets& tg, int64_t cols, const Q8Rows& x, int64_t tokens, cudaStream_t stream) {
  const int64_t bpr = cols / 32, ntt = (tokens + 7) / 8;
  auto* tq = static_cast<uint2*>(x.tiles);
  auto* tds = reinterpret_cast<float2*>(tq + bpr * ntt * 32);
  const int64_t threads = bpr * ntt * 32;
  launch(mma::to_tiles_kernel, static_cast<unsigned>((threads + 255) / 256), 256, 0, stream, x.q, x.ds, tokens, bpr, ntt, tq, tds);
  for (int64_t t0 = 0; t0 < tokens; t0 += mma::kMaxTokens) {
    const int n = static_cast<int>(std::min<int64_t>(mma::kMaxTokens, tokens - t0));
    MatvecTargets part = tg;
    for (int j = 0; j < part.count; ++j) {
      part.m[j].y += t0 * part.m[j].rows;
      if (part.m[j].also) part.m[j].also += t0 * part.m[j].rows;
    }
    const mma::Tiles xt{tq, reinterpret_cast<const float4*>(tds), ntt, t0 / 8};
    const int tiles8 = (n + 7) / 8;
    if (tiles8 == 1) launch_mma_rw<W, 1, Out>(part, bpr, xt, n, stream);
    else if (tiles8 == 2) launch_mma_rw<W, 2, Out>(part, bpr, xt, n, stream);
    else if (tiles8 <= 4) launch_mma_rw<W, 4, Out>(part, bpr, xt, n, stream);
    else if (tiles8 <= 6) launch_mma_rw<W, 6, Out>(part, bpr, xt, n, stream);
    else launch_mma_rw<W, 8, Out>(part, bpr, xt, n, stream);
  }
}

template <class W>
void launch_mma(const MatvecTargets& tg, int64_t cols, const Q8Rows& x, int64_t tokens, MatvecOutput out, cudaStream_t stream) {
  if (out == MatvecOutput::store) launch_mma<W, MatvecOutput::store>(tg, cols, x, tokens, stream);
  else if (out == MatvecOutput::accumulate) launch_mma<W, MatvecOutput::accumulate>(tg, cols, x, tokens, stream);
  else launch_mma<W, MatvecOutput::swiglu>(tg, cols, x, tokens, stream);
}

// The launchers' common checks of the matrices and outputs of one launch.
void check_targets(const std::string& name, const MatvecTargets& targets, MatvecOutput out) {
  if (targets.count < 1 || targets.count > kMaxMatvecTargets || (out == MatvecOutput::swiglu && targets.count != 2))
    throw Error(name + std::to_string(targets.count) + " matrices in one launch");
  int64_t rows = 0;
  for (int j = 0; j < targets.count; ++j) {
    const MatvecTarget& m = targets.m[j];
    if (!m.data || !m.y || m.rows <= 0) throw Error(name + "matrix " + std::to_string(j) + ": null pointer or no rows");
    if (reinterpret_cast<uintptr_t>(m.data) % 16 != 0) throw Error(name + "weights must be 16-byte aligned");
    rows += m.rows;
  }
  if (out == MatvecOutput::swiglu && targets.m[1].rows != targets.m[0].rows) throw Error(name + "gate and up differ in rows");
  if (rows > (int64_t{1} << 31) * kRowsPerBlock) throw Error(name + "too many rows");
}

}  // namespace

bool matvec_supports(DType t) {
  return t == DType::F16 || t == DType::BF16 || t == DType::F32;
}

cudaError_t matvec(DType dtype, int64_t cols, const MatvecTargets& targets, const float* x, MatvecOutput out, cudaStream_t stream) {
  const std::string name = "cuda matvec: ";
  if (!matvec_supports(dtype)) throw Error(name + "unsupported weight type " + std::string(to_string(dtype)));
  if (!x) throw Error(name + "null activations");
  if (reinterpret_cast<uintptr_t>(x) % 16 != 0) throw Error(name + "activations must be 16-byte aligned");
  if (cols <= 0 || cols % 32 != 0) throw Error(name + std::to_string(cols) + " columns is not a positive multiple of 32");
  check_targets(name, targets, out);
  switch (dtype) {
    case DType::BF16: launch_float<64, part_dot_bf16>(targets, cols, x, out, stream); break;
    case DType::F16: launch_float<64, part_dot_f16>(targets, cols, x, out, stream); break;
    default: launch_float<128, part_dot_f32>(targets, cols, x, out, stream); break;
  }
  return cudaGetLastError();
}

cudaError_t matvec(const QuantMatrix& w, const float* x, float* y, cudaStream_t stream) {
  MatvecTargets t;
  t.m[0] = {w.data, w.rows, y};
  t.count = 1;
  return matvec(w.dtype, w.cols, t, x, MatvecOutput::store, stream);
}


cudaError_t quantize_q8(const float* x, const Q8Rows& out, cudaStream_t stream) {
  if (!x || !out.q || !out.ds || out.n <= 0 || out.n % 32 != 0)
    throw Error("cuda quantize_q8: " + std::to_string(out.n) + " values is not a positive multiple of 32 (or a null pointer)");
  const int64_t blocks = out.n / 32;
  const int64_t grid = (blocks + 7) / 8;  // eight warps per thread block
  if (grid >= (int64_t{1} << 31)) throw Error("cuda quantize_q8: too many values");
  launch(quantize_q8_kernel, static_cast<unsigned>(grid), 256, 0, stream, x, blocks, out.q, out.ds);
  return cudaGetLastError();
}

bool next_norm_supports(DType t) { return t == DType::Q8_0 || t == DType::Q4_0; }

bool matvec_q8_supports(DType t) {
  return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K;
}

cudaError_t matvec_q8(DType dtype, int64_t cols, const MatvecTargets& targets, const Q8Rows& x, int64_t tokens,
                      MatvecOutput out, cudaStream_t stream, MatvecKernel kernel, const NextNorm* next_norm) {
  const std::string name = "cuda matvec_q8: ";
  if (!matvec_q8_supports(dtype)) throw Error(name + "unsupported weight type " + std::string(to_string(dtype)));
  if (!x.q || !x.ds) throw Error(name + "null activations");
  const int64_t block_values = dtype_info(dtype).block_elems;
  if (cols <= 0 || cols % block_values != 0)
    throw Error(name + std::to_string(cols) + " columns is not a positive multiple of " + std::to_string(block_values) +
                " (" + std::string(to_string(dtype)) + " blocks)");
  if (tokens <= 0 || x.n != tokens * cols)
    throw Error(name + std::to_string(x.n) + " quantized values for " + std::to_string(tokens) + " tokens of " + std::to_string(cols));
  check_targets(name, targets, out);
  if (reinterpret_cast<uintptr_t>(x.q) % 16 != 0) throw Error(name + "quantized activations must be 16-byte aligned");
  // The fragment-order copy runs a thread per 4 bytes of B: its grid bounds columns times tokens.
  if (cols > (int64_t{1} << 24) || cols / 32 * ((tokens + 7) / 8) / 8 >= (int64_t{1} << 31))
    throw Error(name + "too many columns or tokens");
  if (kernel == MatvecKernel::mma && !x.tiles) throw Error(name + "the tensor-core kernel needs the tiles scratch");
  if (x.tiles && reinterpret_cast<uintptr_t>(x.tiles) % 16 != 0) throw Error(name + "the tiles scratch must be 16-byte aligned");
  const bool tensor_cores = kernel == MatvecKernel::mma || (kernel == MatvecKernel::automatic && tokens >= kMmaTokens && x.tiles);
  // The RMSNorm split across two products (NextNorm): one token, dp4a.
  if ((x.rms_sums || next_norm) && (tokens != 1 || tensor_cores || (x.rms_sums && next_norm)))
    throw Error(name + "a norm inside the products takes one token, the dp4a kernel, and one part of a norm a launch");
  NextNorm next;
  if (next_norm) {
    const NextNorm& nn = *next_norm;
    const int64_t rows = targets.m[0].rows;
    if (!next_norm_supports(dtype) || out != MatvecOutput::accumulate || targets.count != 1 || rows % 32 != 0 || !nn.w || !nn.q8.q || !nn.q8.ds || !nn.sums ||
        nn.q8.n != rows || !(nn.dtype == DType::F32 || nn.dtype == DType::F16 || nn.dtype == DType::BF16))
      throw Error(name + "the next norm needs one accumulated Q8_0/Q4_0 matrix of whole 32-row blocks, its weights, q8 rows and sums");
    next = nn;
  }
  switch (dtype) {
    case DType::Q8_0:
      if (tensor_cores) launch_mma<mma::SplitFormat<32>>(targets, cols, x, tokens, out, stream);
      else launch_dp4a<SplitRows<32>>(targets, cols, x, tokens, out, next, stream);
      break;
    case DType::Q4_0:
      if (tensor_cores) launch_mma<mma::SplitFormat<16>>(targets, cols, x, tokens, out, stream);
      else launch_dp4a<SplitRows<16>>(targets, cols, x, tokens, out, next, stream);
      break;
    case DType::Q4_K:
      if (tensor_cores) launch_mma<mma::KQuant45Format<false>>(targets, cols, x, tokens, out, stream);
      else launch_dp4a<KQuantRows<KQuant45<false>>>(targets, cols, x, tokens, out, next, stream);
      break;
    case DType::Q5_K:
      if (tensor_cores) launch_mma<mma::KQuant45Format<true>>(targets, cols, x, tokens, out, stream);
      else launch_dp4a<KQuantRows<KQuant45<true>>>(targets, cols, x, tokens, out, next, stream);
      break;
    default:
      if (tensor_cores) launch_mma<mma::KQuant6Format>(targets, cols, x, tokens, out, stream);
      else launch_dp4a<KQuantRows<KQuant6>>(targets, cols, x, tokens, out, next, stream);
      break;
  }
  return cudaGetLastError();
}

cudaError_t matvec_q8(const QuantMatrix& w, const Q8Rows& x, int64_t tokens, float* y, bool accumulate, cudaStream_t stream) {
  MatvecTargets t;
  t.m[0] = {w.data, w.rows, y};
  t.count = 1;
  return matvec_q8(w.dtype, w.cols, t, x, tokens, accumulate ? MatvecOutput::accumulate : MatvecOutput::store, stream);
}

}  // namespace umi::cuda
