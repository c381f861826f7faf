// Prefill attention on the f16 tensor cores (contract in attention_mma.h).
//
// Fragment layouts of mma.sync m16n8k16 (PTX ISA), g = lane / 4, c = lane % 4:
// A (16 x 16, row-major) a0: row g, cols 2c, 2c+1; a1: row g+8; a2: row g,
// cols 2c+8, 2c+9; a3: row g+8, cols 2c+8, 2c+9. B (16 x 8) b0: rows 2c, 2c+1
// of col g; b1: rows 2c+8, 2c+9. C (16 x 8, f32) c0, c1: row g, cols 2c, 2c+1;
// c2, c3: row g+8.
// - Q's A fragments: ldmatrix.x4 of the 16 x 16 tile (once per block).
// - K as S's B operand (k = dimension, n = key): a key's dimensions are
//   contiguous in its row, as ldmatrix (no transpose) hands them out.
// - P as PV's A operand: the C fragments of two adjacent 8-key score tiles are
//   exactly the A fragment of their 16 keys, rounded to f16 in registers.
// - V as PV's B operand (k = key, n = dimension): ldmatrix.trans of V's rows.
// Shared rows are padded to head_dim + 8 halves (16 bytes): the 8 rows an
// ldmatrix phase reads then fall in 8 different bank groups.
#include "backend/cuda/attention_mma.h"

#include <cuda_fp16.h>

#include <string>

#include "backend/cuda/kv_pass.cuh"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/q8_store.cuh"
#include "core/error.h"

namespace umi::cuda {

namespace {

constexpr int kRows = 64;  // (token, head) rows a block takes: 4 warps of 16
constexpr int kKeys = 64;  // keys a tile
constexpr int kThreads = 128;

template <int HD>
struct Smem {
  static constexpr int kStride = HD + 8;  // halves a shared row
  // q [kRows][kStride], k [2][kKeys][kStride], v [2][kKeys][kStride]; the
  // output is staged in k's space as floats [kRows][kStride].
  static constexpr size_t kBytes = static_cast<size_t>(kRows + 4 * kKeys) * kStride * sizeof(__half);
};

__device__ inline uint32_t smem_addr(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

__device__ inline void cp_async16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(smem_addr(dst)), "l"(src));
}
__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;"); }
template <int N>
__device__ inline void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

__device__ inline void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ inline void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// c += a . b (f16 in, f32 sums).
__device__ inline void mma_f16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ inline uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// What a block works on: its group's tokens and q heads, and its keys [0, k1).
struct BlockRows {
  int64_t t0;     // the group's first token in the pass
  int tn;         // its tokens
  int rows;       // tn * hpc valid rows
  int h0, kvh;    // first q head, its KV head
  int64_t first;  // the first token's position (the group's are consecutive)
  int64_t k1;     // keys: first + tn
};

// A chunk of 8 values of a Q8_0 row as loaded: its block's d and its 8 int8
// (kv_pass.cuh: 2-byte aligned only, so pairs).
struct Q8Chunk {
  float d;
  char2 q[4];
};

__device__ inline Q8Chunk load_q8_chunk(const unsigned char* head, int c) {
  const char2* q = reinterpret_cast<const char2*>(q8_kv_values(head, 8 * c));
  return {q8_kv_scale(head, 8 * c), {q[0], q[1], q[2], q[3]}};
}

// d x q rounded to f16 (one more rounding than the f16 cache's), 16 bytes at dst.
__device__ inline void store_dequantized(__half* dst, const Q8Chunk& x) {
  const float d = x.d;
  uint4 out;
  uint32_t* o = reinterpret_cast<uint32_t*>(&out);
#pragma unroll
  for (int k = 0; k < 4; ++k) o[k] = pack_half2(d * static_cast<float>(x.q[k].x), d * static_cast<float>(x.q[k].y));
  *reinterpret_cast<uint4*>(dst) = out;
}

// load_tile for a q8_0 cache: 8 values a chunk dequantized to f16 and
// stored, up to four chunks' loads in flight before their stores.
template <int HD>
__device__ inline void load_tile_q8(const AttentionJob& job, const BlockRows& b, int64_t tile, __half* s_k, __half* s_v) {
  constexpr int kChunks = HD / 8, kStride = Smem<HD>::kStride, kPerThread = kKeys * kChunks / kThreads;
  constexpr int kBatch = kPerThread < 4 ? kPerThread : 4;
  static_assert(kKeys * kChunks % (kThreads * kBatch) == 0);
  const int64_t kv_dim = static_cast<int64_t>(job.s.n_kv_heads) * HD, row_bytes = kv_row_bytes(DType::Q8_0, kv_dim),
                head = kv_row_bytes(DType::Q8_0, b.kvh * HD);
  for (int i0 = threadIdx.x; i0 < kKeys * kChunks; i0 += kThreads * kBatch) {
    Q8Chunk k[kBatch], v[kBatch];
#pragma unroll
    for (int n = 0; n < kBatch; ++n) {
      const int i = i0 + n * kThreads, j = i / kChunks, c = i % kChunks;
      const int64_t key = tile + j;
      if (key < b.k1) {
        const KvRow row = kv_row(job.p, b.t0, key, job.layer, row_bytes);
        k[n] = load_q8_chunk(row.k + head, c);
        v[n] = load_q8_chunk(row.v + head, c);
      } else {
        k[n] = v[n] = Q8Chunk{0.f, {}};
      }
    }
#pragma unroll
    for (int n = 0; n < kBatch; ++n) {
      const int i = i0 + n * kThreads, j = i / kChunks, c = i % kChunks;
      store_dequantized(s_k + j * kStride + 8 * c, k[n]);
      store_dequantized(s_v + j * kStride + 8 * c, v[n]);
    }
  }
}

// Keys [tile, tile + kKeys) of the block's KV head into buffer `buf`: a
// 16-byte copy per thread and chunk (a q8_0 cache: load_tile_q8, the same
// in the whole block), zeros past k1 (the V rows of keys a row does not see
// are multiplied by P = 0, which a NaN in stale shared memory would survive).
template <int HD>
__device__ inline void load_tile(const AttentionJob& job, const BlockRows& b, int64_t tile, __half* s_k, __half* s_v) {
  if (job.p.kv_dtype == DType::Q8_0) return load_tile_q8<HD>(job, b, tile, s_k, s_v);
  constexpr int kChunks = HD / 8, kStride = Smem<HD>::kStride;
  const int64_t kv_dim = static_cast<int64_t>(job.s.n_kv_heads) * HD;
#pragma unroll 4
  for (int i = threadIdx.x; i < kKeys * kChunks; i += kThreads) {
    const int j = i / kChunks, c = i % kChunks;
    const int64_t key = tile + j;
    __half* dk = s_k + j * kStride + 8 * c;
    __half* dv = s_v + j * kStride + 8 * c;
    if (key < b.k1) {
      const KvRow row = kv_row(job.p, b.t0, key, job.layer, 2 * kv_dim);
      cp_async16(dk, reinterpret_cast<const __half*>(row.k) + b.kvh * HD + 8 * c);
      cp_async16(dv, reinterpret_cast<const __half*>(row.v) + b.kvh * HD + 8 * c);
    } else {
      *reinterpret_cast<uint4*>(dk) = make_uint4(0, 0, 0, 0);
      *reinterpret_cast<uint4*>(dv) = make_uint4(0, 0, 0, 0);
    }
  }
}

// The block's q rows into shared memory as f16, scaled by log2(e) /
// sqrt(head_dim) (the softmax then uses exp2); zeros for the padding rows.
template <int HD>
__device__ inline void load_q(const AttentionJob& job, const BlockRows& b, __half* s_q) {
  constexpr int kQuads = HD / 4, kStride = Smem<HD>::kStride;
  const float scale = rsqrtf(static_cast<float>(HD)) * 1.44269504088896341f;
  for (int i = threadIdx.x; i < kRows * kQuads; i += kThreads) {
    const int r = i / kQuads, c = i % kQuads;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (r < b.rows) {
      const int64_t th = (b.t0 + r / job.hpc) * job.s.n_heads + b.h0 + r % job.hpc;
      v = reinterpret_cast<const float4*>(job.q + th * HD)[c];
    }
    uint2 h;
    h.x = pack_half2(v.x * scale, v.y * scale);
    h.y = pack_half2(v.z * scale, v.w * scale);
    *reinterpret_cast<uint2*>(s_q + r * kStride + 4 * c) = h;
  }
}

// S (this warp's 16 rows x the tile's 64 keys) = Q K^T.
template <int HD>
__device__ inline void scores(const uint32_t (&qf)[HD / 16][4], const __half* s_k, int lane, float (&sc)[kKeys / 8][4]) {
  constexpr int kStride = Smem<HD>::kStride;
#pragma unroll
  for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) sc[n][e] = 0.f;
  // ldmatrix.x4: matrices 0-3 = keys 8n..8n+7 at dimensions 32k2 + 0, 8, 16,
  // 24: the b0, b1 of k-steps 2 k2 and 2 k2 + 1. Lane i gives row i % 8 of matrix i / 8.
  const __half* base = s_k + (lane % 8) * kStride + 8 * (lane / 8);
#pragma unroll
  for (int n = 0; n < kKeys / 8; ++n) {
#pragma unroll
    for (int k2 = 0; k2 < HD / 32; ++k2) {
      uint32_t b[4];
      ldmatrix_x4(b, base + 8 * n * kStride + 32 * k2);
      mma_f16(sc[n], qf[2 * k2], b[0], b[1]);
      mma_f16(sc[n], qf[2 * k2 + 1], b[2], b[3]);
    }
  }
}

// O (16 rows x HD) += P (16 x 64 keys, from the score fragments) V.
template <int HD>
__device__ inline void add_pv(const float (&pr)[kKeys / 8][4], const __half* s_v, int lane, float (&o)[HD / 8][4]) {
  constexpr int kStride = Smem<HD>::kStride;
  // ldmatrix.x4.trans: matrices 0-3 = keys 16k + 0 / + 8 at dimensions 8d, then
  // at 8d + 8: b0, b1 of dimension tiles d and d + 1.
  const __half* base = s_v + (lane % 8 + 8 * ((lane / 8) % 2)) * kStride + 8 * (lane / 16);
#pragma unroll
  for (int k = 0; k < kKeys / 16; ++k) {
    const uint32_t a[4] = {pack_half2(pr[2 * k][0], pr[2 * k][1]), pack_half2(pr[2 * k][2], pr[2 * k][3]),
                           pack_half2(pr[2 * k + 1][0], pr[2 * k + 1][1]), pack_half2(pr[2 * k + 1][2], pr[2 * k + 1][3])};
#pragma unroll
    for (int d = 0; d < HD / 8; d += 2) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, base + 16 * k * kStride + 8 * d);
      mma_f16(o[d], a, b[0], b[1]);
      mma_f16(o[d + 1], a, b[2], b[3]);
    }
  }
}

// The online softmax over one tile's scores (log2 units) of this lane's two
// rows (g and g + 8 of the warp's 16): masks keys past each row's position,
// rescales the running sums to the new max, and turns the scores into P.
// Every row sees key 0 in the first tile, so its max is finite from then on.
template <int HD>
__device__ inline void softmax_tile(float (&sc)[kKeys / 8][4], float (&m)[2], float (&l)[2], float (&o)[HD / 8][4],
                                    const int64_t (&limit)[2], int64_t tile, int lane) {
  const bool masked = tile + kKeys - 1 > limit[0] || tile + kKeys - 1 > limit[1];
  if (masked) {
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (tile + 8 * n + 2 * (lane % 4) + (e & 1) > limit[e / 2]) sc[n][e] = -INFINITY;
  }
  float mx[2] = {m[0], m[1]};
#pragma unroll
  for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) mx[e / 2] = fmaxf(mx[e / 2], sc[n][e]);
#pragma unroll
  for (int i = 0; i < 2; ++i) {  // a row's scores lie in the 4 lanes of a quad
    mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
    mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
    const float corr = exp2f(m[i] - mx[i]);  // 0 on the first tile (m = -inf)
    l[i] *= corr;
#pragma unroll
    for (int d = 0; d < HD / 8; ++d) o[d][2 * i] *= corr, o[d][2 * i + 1] *= corr;
    m[i] = mx[i];
  }
#pragma unroll
  for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      sc[n][e] = exp2f(sc[n][e] - m[e / 2]);
      l[e / 2] += sc[n][e];
    }
}

// O / l through shared memory (floats, rows of kStride), then a warp a row
// into `out` (and its q8 blocks: a warp's 32 values are one block).
template <int HD>
__device__ inline void store_rows(const AttentionJob& job, const BlockRows& b, const float (&o)[HD / 8][4], const float (&l)[2],
                                  float* s_o, int warp, int lane) {
  constexpr int kStride = Smem<HD>::kStride;  // floats here: 8 more than HD, the float2 stores below conflict-free
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int r = 16 * warp + lane / 4 + 8 * i;
    const float inv = 1.f / l[i];
#pragma unroll
    for (int d = 0; d < HD / 8; ++d)
      *reinterpret_cast<float2*>(s_o + r * kStride + 8 * d + 2 * (lane % 4)) = make_float2(o[d][2 * i] * inv, o[d][2 * i + 1] * inv);
  }
  __syncthreads();
  for (int r = warp; r < b.rows; r += kThreads / 32) {
    const int64_t th = (b.t0 + r / job.hpc) * job.s.n_heads + b.h0 + r % job.hpc;  // (token, head)
#pragma unroll
    for (int d = lane; d < HD; d += 32) {
      const float v = s_o[r * kStride + d];
      job.out[th * HD + d] = v;
      if (job.q8.q) store_q8(v, (th * HD + d) >> 5, lane, job.q8.q, job.q8.ds);
    }
  }
}

// Grid (groups, n_heads / hpc). Blocks in reverse group order: a sequence's
// later groups see more keys, and start first.
template <int HD>
__global__ void __launch_bounds__(kThreads, 2) mma_attention_kernel(const AttentionJob job) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  constexpr int kStride = Smem<HD>::kStride;
  __half* s_q = reinterpret_cast<__half*>(smem_raw);
  __half* s_k = s_q + kRows * kStride;      // [2][kKeys][kStride]
  __half* s_v = s_k + 2 * kKeys * kStride;  // [2][kKeys][kStride]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int32_t gw = job.p.groups[gridDim.x - 1 - blockIdx.x];
  BlockRows b;
  b.t0 = gw & 0xFFFFFF;
  b.tn = min(gw >> 24, kRows / job.hpc);  // more would be a caller's error: never past the block's rows
  b.rows = b.tn * job.hpc;
  b.h0 = blockIdx.y * job.hpc;
  b.kvh = b.h0 / (job.s.n_heads / job.s.n_kv_heads);
  b.first = job.p.positions[b.t0];
  b.k1 = b.first + b.tn;
  if (threadIdx.x * 16 < b.k1 && threadIdx.x < kKeys / 16) prefetch_block_slot(job.p, b.t0, threadIdx.x * 16);
  wait_for_inputs();
  load_tile<HD>(job, b, 0, s_k, s_v);
  cp_async_commit();
  load_q<HD>(job, b, s_q);
  __syncthreads();
  uint32_t qf[HD / 16][4];
  {
    const __half* base = s_q + (16 * warp + lane % 8 + 8 * ((lane / 8) % 2)) * kStride + 8 * (lane / 16);
#pragma unroll
    for (int k = 0; k < HD / 16; ++k) ldmatrix_x4(qf[k], base + 16 * k);
  }
  // This lane's two rows: the last key each sees (padding rows: the last token's).
  int64_t limit[2];
#pragma unroll
  for (int i = 0; i < 2; ++i) limit[i] = b.first + min((16 * warp + lane / 4 + 8 * i) / job.hpc, b.tn - 1);
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, o[HD / 8][4];
#pragma unroll
  for (int d = 0; d < HD / 8; ++d)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[d][e] = 0.f;
  int buf = 0;
  for (int64_t tile = 0; tile < b.k1; tile += kKeys, buf ^= 1) {
    if (tile + kKeys < b.k1) load_tile<HD>(job, b, tile + kKeys, s_k + (buf ^ 1) * kKeys * kStride, s_v + (buf ^ 1) * kKeys * kStride);
    cp_async_commit();
    cp_async_wait<1>();  // this tile's copies (the next tile's may still run)
    __syncthreads();
    float sc[kKeys / 8][4];
    scores<HD>(qf, s_k + buf * kKeys * kStride, lane, sc);
    softmax_tile<HD>(sc, m, l, o, limit, tile, lane);
    add_pv<HD>(sc, s_v + buf * kKeys * kStride, lane, o);
    __syncthreads();  // the next iteration's copy rewrites the other buffer
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
    l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
  }
  store_rows<HD>(job, b, o, l, reinterpret_cast<float*>(s_k), warp, lane);
}

template <int HD>
void launch_for(const AttentionJob& job, dim3 grid, cudaStream_t stream) {
  const size_t smem = Smem<HD>::kBytes;
  // Over the 48 KB default: each launch states it (a host-side attribute,
  // not a stream operation: allowed while a graph is being recorded).
  const cudaError_t e = cudaFuncSetAttribute(mma_attention_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (e != cudaSuccess) throw Error(std::string("cuda attention: shared memory attribute: ") + cudaGetErrorString(e));
  launch(mma_attention_kernel<HD>, grid, kThreads, smem, stream, job);
}

}  // namespace

bool mma_attention_supports(const HeadShape& s, DType kv_dtype) {
  return (kv_dtype == DType::F16 || kv_dtype == DType::Q8_0) && (s.head_dim == 32 || s.head_dim == 64 || s.head_dim == 128);
}

int mma_attention_tokens_per_group(int heads_per_block) { return kRows / heads_per_block; }

void mma_attention(const AttentionJob& job, cudaStream_t stream) {
  const HeadShape& s = job.s;
  if (!mma_attention_supports(s, job.p.kv_dtype) || job.hpc < 1 || job.hpc > kRows || (s.n_heads / s.n_kv_heads) % job.hpc != 0)
    throw Error("cuda attention: the tensor-core kernel does not take this head shape");
  const dim3 grid(static_cast<unsigned>(job.p.n_groups), static_cast<unsigned>(s.n_heads / job.hpc));
  if (s.head_dim == 32) launch_for<32>(job, grid, stream);
  else if (s.head_dim == 64) launch_for<64>(job, grid, stream);
  else launch_for<128>(job, grid, stream);
}

}  // namespace umi::cuda
