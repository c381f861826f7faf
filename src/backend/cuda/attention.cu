// Paged attention on the GPU for decode and prefill chunks.
//
// A thread block holds R (token, q head) rows that read the same keys: the
// q heads of one KV head group (GQA) times a few consecutive tokens of one
// sequence, and takes the keys in tiles of 32 (see the kernel for how its
// four warps share them). K and V are read once per block instead of once
// per (token, head): the first version (a block per token and head, a warp
// per key) read them n_heads / n_kv_heads times per token, and per token
// again in prefill. When a pass has few blocks (decode), each group's keys
// are split over more blocks (flash-decoding), down to 32 keys a split, and
// a second kernel merges the splits: a decode step's attention is a chain of
// dependent loads, and one block walking 144 keys took twice as long as
// five blocks and a merge (umi_cuda_attention, session 9). Decode at
// contexts up to 1K (head_dim 128, f16 KV) has its own kernel, a warp per q
// head (decode_attention_kernel).
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include "backend/cuda/attention_mma.h"
#include "backend/cuda/kv_pass.cuh"
#include "backend/cuda/ops.h"
#include "backend/cuda/launch.cuh"
#include "backend/cuda/q8_store.cuh"
#include "core/error.h"

namespace umi::cuda {

namespace {

constexpr int kWarps = 4;

__device__ inline float warp_max(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
__device__ inline float warp_add(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// N consecutive KV values as floats (N = 1, 2, 4 or 8; aligned to N values).
template <int N>
__device__ inline void load_kv(const __half* p, float* out) {
  if constexpr (N == 8) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = __half22float2(h[i]);
      out[2 * i] = f.x;
      out[2 * i + 1] = f.y;
    }
  } else if constexpr (N == 4) {
    const uint2 u = *reinterpret_cast<const uint2*>(p);
    const __half2* h = reinterpret_cast<const __half2*>(&u);
    const float2 a = __half22float2(h[0]), b = __half22float2(h[1]);
    out[0] = a.x, out[1] = a.y, out[2] = b.x, out[3] = b.y;
  } else if constexpr (N == 2) {
    const float2 a = __half22float2(*reinterpret_cast<const __half2*>(p));
    out[0] = a.x, out[1] = a.y;
  } else {
    out[0] = __half2float(*p);
  }
}
template <int N>
__device__ inline void load_kv(const float* p, float* out) {
  if constexpr (N >= 4) {
#pragma unroll
    for (int i = 0; i < N / 4; ++i) {
      const float4 f = reinterpret_cast<const float4*>(p)[i];
      out[4 * i] = f.x, out[4 * i + 1] = f.y, out[4 * i + 2] = f.z, out[4 * i + 3] = f.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = p[i];
  }
}

// The KV types the CUDA-core kernel reads: __half, float, and Q8_0 blocks
// (KvQ8, a tag: its rows are bytes, 34 a block of 32 values, f16 d first).
struct KvQ8 {};
template <typename KV>
struct KvType;
template <>
struct KvType<__half> {
  static constexpr DType kDtype = DType::F16;
};
template <>
struct KvType<float> {
  static constexpr DType kDtype = DType::F32;
};
template <>
struct KvType<KvQ8> {
  static constexpr DType kDtype = DType::Q8_0;
};

// N values (aligned to N) from value i of a head's row at h, as floats
// (Q8_0: pairs of int8, kv_pass.cuh).
template <typename KV, int N>
__device__ inline void load_kv_at(const unsigned char* h, int i, float* out) {
  if constexpr (std::is_same_v<KV, KvQ8>) {
    const float d = q8_kv_scale(h, i);
    if constexpr (N == 1) {
      out[0] = d * static_cast<float>(*q8_kv_values(h, i));
    } else {
      const char2* q = reinterpret_cast<const char2*>(q8_kv_values(h, i));
#pragma unroll
      for (int k = 0; k < N / 2; ++k) {
        const char2 c = q[k];
        out[2 * k] = d * static_cast<float>(c.x);
        out[2 * k + 1] = d * static_cast<float>(c.y);
      }
    }
  } else {
    load_kv<N>(reinterpret_cast<const KV*>(h) + i, out);
  }
}

// Shared memory of a block, in floats: q rows, the merged output, a
// tile's partial scores per warp (two tiles' worth, so that one barrier
// per tile suffices; shared tiles only), each warp's probabilities of its
// tile, each warp's max and denominator per row.
size_t smem_floats(int rows, int hd) { return static_cast<size_t>(rows) * (2 * hd + 3 * kWarps * 32 + 2 * kWarps); }

// Keys a block takes with shared tiles (below) rather than a tile per warp.
constexpr int64_t kSharedTileKeys = 64;

// Keys [k0, k1) of this block's split, the same in both attention kernels
// (the merge reads both): the split count is fixed by the longest context
// the pass may have (a graph replays it), the split length follows this
// group's context (`keys`), so that every split has work when the context is
// shorter than that. 32-bit arithmetic (contexts are far below 2^31,
// kv_pass.cuh): a 64-bit division is ~70 instructions, and a decode block
// runs only ~2,700.
__device__ inline void split_keys(int64_t keys, int64_t min_split_keys, int64_t& k0, int64_t& k1) {
  const unsigned n = static_cast<unsigned>(keys);
  const unsigned per_split = max(static_cast<unsigned>(min_split_keys), (n + gridDim.z - 1) / gridDim.z);
  k0 = static_cast<int64_t>(blockIdx.z) * per_split;
  k1 = min(k0 + static_cast<int64_t>(per_split), keys);
}

// V rows [j_begin, j_end) of a tile (their pointers in my_v of lanes j,
// their probabilities in tile_p) into acc: N loads in flight before their sums.
template <typename KV, int E, int R, int N>
__device__ inline void add_v_rows(float (&acc)[R][E], const float* tile_p, unsigned long long my_v, int j_begin, int j_end,
                                  int lane, bool owns, int rows) {
  for (int j0 = j_begin; j0 < j_end; j0 += N) {
    float v[N][E];
#pragma unroll
    for (int u = 0; u < N; ++u) {
      const auto* vr = reinterpret_cast<const unsigned char*>(__shfl_sync(0xffffffffu, my_v, (j0 + u) & 31));
      if (owns && j0 + u < j_end) load_kv_at<KV, E>(vr, lane * E, v[u]);
      else
#pragma unroll
        for (int e = 0; e < E; ++e) v[u][e] = 0.f;
    }
#pragma unroll
    for (int u = 0; u < N; ++u) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r >= rows) break;
        const float pj = j0 + u < j_end ? tile_p[r * 32 + j0 + u] : 0.f;
#pragma unroll
        for (int e = 0; e < E; ++e) acc[r][e] += pj * v[u][e];
      }
    }
  }
}

// KV: __half, float or KvQ8. E: output dimensions per lane (head_dim <= 32 E).
// R: most rows per block. Grid (groups, n_heads / hpc, splits).
//
// Lane i of a warp owns key i of a 32-key tile. Two ways to share the keys
// among the four warps, chosen per block by how many keys it has:
// - Many keys (long contexts, prefill): each warp its own tiles, scored over
//   the whole head dimension (the K row's loads all in flight), its own
//   online softmax, and all 32 V rows, VB at a time; the warps' sums are
//   rescaled to one max at the end.
// - At most kSharedTileKeys (decode at short contexts): the four warps take
//   each tile together. Warp w scores the 8-value chunks w, w + 4, .. of the
//   head dimension; the partial scores meet in shared memory; every warp
//   runs the same online softmax over the full scores (so all hold the same
//   max and denominator); warp w adds the V rows of keys 8w .. 8w + 7. With
//   a tile per warp, one warp of one block per head did all the work of a
//   short context, one instruction every ~17 cycles (ncu): 17 us a layer for
//   16 keys, 11.7 shared. At 32K keys sharing was slower (110 us a layer
//   against 78: fewer loads in flight per warp, a barrier per tile).
template <typename KV, int E, int R>
__global__ void __launch_bounds__(32 * kWarps, R <= 4 && E <= 4 ? 4 : 1) attention_kernel(const AttentionJob job) {
  const KvPass& p = job.p;
  const HeadShape& s = job.s;
  const int hpc = job.hpc;
  const int64_t layer = job.layer, min_split_keys = job.min_split_keys;
  const float* __restrict__ q = job.q;
  float* __restrict__ out = job.out;
  const Q8Rows& q8 = job.q8;
  float* __restrict__ partial = job.partial;
  constexpr int VB = R <= 4 ? 16 : 8;  // V rows in flight: more when the sums leave registers free
  extern __shared__ float smem[];
  const int hd = s.head_dim, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int32_t gw = p.groups[blockIdx.x];
  const int64_t t0 = gw & 0xFFFFFF;
  const int tn = gw >> 24, rows = tn * hpc, h0 = blockIdx.y * hpc;
  const int kvh = h0 / (s.n_heads / s.n_kv_heads);
  const int64_t kv_dim = static_cast<int64_t>(s.n_kv_heads) * hd;
  float* s_q = smem;                        // [R][hd], scaled by 1/sqrt(hd)
  float* s_acc = s_q + R * hd;              // [R][hd]
  float* s_s = s_acc + R * hd;              // [2][kWarps][R][32]
  float* s_p = s_s + 2 * kWarps * R * 32;   // [kWarps][R][32]
  float* s_m = s_p + kWarps * R * 32;       // [kWarps][R]
  float* s_l = s_m + kWarps * R;            // [kWarps][R]
  const float scale = rsqrtf(static_cast<float>(hd));
  const int64_t first_pos = p.positions[t0];  // the group's tokens are consecutive
  int64_t k0, k1;
  split_keys(first_pos + tn, min_split_keys, k0, k1);
  const bool shared = R <= 8 && k1 - k0 <= kSharedTileKeys;  // the same in the whole block (see below)
  // The pass's tables (groups, positions, block table) were copied before
  // the step's first kernel and no kernel writes them: the chain of loads
  // to this lane's first KV block runs before the wait, while the kernel
  // before (RoPE's KV store) finishes. K and V themselves only after it.
  {
    const int64_t key = k0 + (shared ? 0 : 32 * warp) + lane;
    if (key < k1) prefetch_block_slot(p, t0, key);
  }
  wait_for_inputs();
  // Row r: token t0 + r / hpc, head h0 + r % hpc; a warp a row, 16-byte
  // loads (hd % 8 == 0). (Divisions per element by the run-time head_dim
  // were a tenth of a decode block's instructions, here and at the end.)
  for (int r = warp; r < rows; r += kWarps) {
    const float* qr = q + ((t0 + r / hpc) * s.n_heads + h0 + r % hpc) * hd;
    for (int d = 4 * lane; d < hd; d += 128) {
      float4 v = *reinterpret_cast<const float4*>(qr + d);
      v.x *= scale, v.y *= scale, v.z *= scale, v.w *= scale;
      *reinterpret_cast<float4*>(s_q + r * hd + d) = v;
      *reinterpret_cast<float4*>(s_acc + r * hd + d) = make_float4(0.f, 0.f, 0.f, 0.f);
    }
  }
  __syncthreads();
  // `shared` (above) is the same in the whole block; never for the 16-row
  // blocks of prefill, whose registers are then those of the own-tile path alone.
  float m[R], l[R], acc[R][E];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int e = 0; e < E; ++e) acc[r][e] = 0.f;
  }
  const bool owns = lane * E < hd;
  // Shared: chunks warp, warp + 4, .. (E of them at most); own: all 4E.
  const int chunk0 = shared ? warp : 0, chunk_step = shared ? kWarps : 1, chunks = shared ? E : 4 * E;
  int buf = 0;
  for (int64_t tile = k0 + (shared ? 0 : 32 * warp); tile < k1; tile += shared ? 32 : 32 * kWarps, buf ^= 1) {
    const int64_t key = tile + lane;
    float sc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) sc[r] = 0.f;
    unsigned long long my_v = 0;  // this lane's key's V row, handed round the warp below
    if (key < k1) {
      const KvRow row = kv_row(p, t0, key, layer, kv_row_bytes(KvType<KV>::kDtype, kv_dim));
      const int64_t head = kv_row_bytes(KvType<KV>::kDtype, kvh * hd);
      const unsigned char* kr = row.k + head;
      my_v = reinterpret_cast<unsigned long long>(row.v + head);
      // Unrolled to the most chunks of this E, so that the row's 16-byte
      // loads are all in flight at once (with a run-time bound they went one
      // after another).
#pragma unroll
      for (int i = 0; i < 4 * E; ++i) {
        const int d = 8 * (chunk0 + chunk_step * i);
        if (i >= chunks || d >= hd) break;
        float k8[8];
        load_kv_at<KV, 8>(kr, d, k8);
#pragma unroll
        for (int r = 0; r < R; ++r) {
          if (r >= rows) break;
          const float4 a = *reinterpret_cast<const float4*>(s_q + r * hd + d);
          const float4 b = *reinterpret_cast<const float4*>(s_q + r * hd + d + 4);
          sc[r] += a.x * k8[0] + a.y * k8[1] + a.z * k8[2] + a.w * k8[3] + b.x * k8[4] + b.y * k8[5] + b.z * k8[6] + b.w * k8[7];
        }
      }
    }
    if (shared) {  // the warps' partial scores into full ones
      float* ss = s_s + buf * kWarps * R * 32;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r >= rows) break;
        ss[(warp * R + r) * 32 + lane] = sc[r];
      }
      __syncthreads();
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r >= rows) break;
        sc[r] = 0.f;
#pragma unroll
        for (int w = 0; w < kWarps; ++w) sc[r] += ss[(w * R + r) * 32 + lane];
      }
    }
    float* tile_p = s_p + warp * R * 32;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      if (r >= rows) break;
      const float v = key < k1 && key <= first_pos + (tn == 1 ? 0 : r / hpc) ? sc[r] : -INFINITY;
      const float m_new = fmaxf(m[r], warp_max(v));
      const float corr = m_new == -INFINITY ? 1.f : __expf(m[r] - m_new);
      const float pr = v == -INFINITY ? 0.f : __expf(v - m_new);
      l[r] = l[r] * corr + pr;  // this lane's share; summed over the warp at the end
#pragma unroll
      for (int e = 0; e < E; ++e) acc[r][e] *= corr;
      m[r] = m_new;
      tile_p[r * 32 + lane] = pr;
    }
    __syncwarp();
    // V rows [j_begin, j_end) of the tile: a shared tile's eight for this
    // warp in one round (a round of VB would be half zeros), or VB at a time.
    const int n = k1 - tile < 32 ? static_cast<int>(k1 - tile) : 32;
    const int j_begin = shared ? warp * (32 / kWarps) : 0, j_end = shared ? min(n, j_begin + 32 / kWarps) : n;
    if (shared) add_v_rows<KV, E, R, 32 / kWarps>(acc, tile_p, my_v, j_begin, j_end, lane, owns, rows);
    else add_v_rows<KV, E, R, VB>(acc, tile_p, my_v, j_begin, j_end, lane, owns, rows);
    __syncwarp();  // tile_p is rewritten by the next tile
  }
  // Merge the warps: each scales its sums to the block's max per row, then
  // adds them into s_acc in turn. Shared tiles: every warp has the same max
  // and denominator, so warp 0's denominator is the row's.
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (r >= rows) break;
    const float lw = warp_add(l[r]);
    if (lane == 0) {
      s_m[warp * R + r] = m[r];
      s_l[warp * R + r] = shared && warp != 0 ? 0.f : lw;
    }
  }
  __syncthreads();
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (r >= rows) break;
    float M = -INFINITY;
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, s_m[w * R + r]);
    const float wgt = m[r] == -INFINITY ? 0.f : __expf(m[r] - M);  // a warp that saw no key has no sums
#pragma unroll
    for (int e = 0; e < E; ++e) acc[r][e] *= wgt;
  }
  for (int w = 0; w < kWarps; ++w) {
    if (warp == w && owns) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (r >= rows) break;
#pragma unroll
        for (int e = 0; e < E; ++e) s_acc[r * hd + lane * E + e] += acc[r][e];
      }
    }
    __syncthreads();
  }
  // A warp a row: its max and denominator once, then the lanes take the dimensions.
  for (int r = warp; r < rows; r += kWarps) {
    float M = -INFINITY, L = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, s_m[w * R + r]);
#pragma unroll
    for (int w = 0; w < kWarps; ++w)
      if (s_l[w * R + r] > 0.f) L += s_l[w * R + r] * __expf(s_m[w * R + r] - M);
    const int64_t th = (t0 + r / hpc) * s.n_heads + h0 + r % hpc;  // (token, head)
    const int64_t rec = th * gridDim.z + blockIdx.z;
    if (partial && lane == 0)  // this split's max and denominator (attention_merge_kernel's layout)
      reinterpret_cast<float2*>(partial + p.tokens * s.n_heads * gridDim.z * hd)[rec] = make_float2(M, L);
    for (int d = lane; d < hd; d += 32) {
      if (!partial) {
        const float v = s_acc[r * hd + d] / L;
        out[th * hd + d] = v;
        // A warp's 32 values are one q8 block (hd % 32 == 0: every lane takes every round).
        if (q8.q) store_q8(v, (th * hd + d) >> 5, lane, q8.q, q8.ds);
      } else {  // this split's unnormalised sum
        partial[rec * hd + d] = s_acc[r * hd + d];
      }
    }
  }
}

// Decode (one token a group) over splits of at most kDecodeSplitKeys keys,
// head_dim 128, f16 KV: a warp per q head, so that no warp waits for
// another. Each warp scores a 32-key tile itself (lane i: key i over the
// whole head dimension, its 16 loads in flight), keeps its own online
// softmax, adds the tile's V rows (lane i: dimensions 4i..4i+3, the 32 rows'
// loads in flight at once) and writes its own output. The shared-tile path
// of attention_kernel split each key's score over four warps and met in
// shared memory (a barrier a tile, the softmax done four times, the V sums
// merged across warps): ~1,750 instructions a warp, one per ~7.7 cycles
// (ncu, session 10).
// MaxWarps: the most q heads a block takes (its register budget: with 16, a
// thread has 128 registers and spills a few bytes; with 4, none).
// Used up to kDecodeMaxKeys keys of context: past them the four warps' own
// reads of each K and V row (the shared-tile path reads them once a block)
// cost more in L2 than the barriers saved (umi_cuda_attention, session 10:
// 9.7 against 12.4 us a layer at 1K keys, 16.9 against 14.2 at 2K).
constexpr int kDecodeDim = 128;
constexpr int64_t kDecodeSplitKeys = 64, kDecodeMaxKeys = 1024;
template <int MaxWarps>
__global__ void __launch_bounds__(32 * MaxWarps) decode_attention_kernel(const AttentionJob job) {
  const KvPass& p = job.p;
  const HeadShape& s = job.s;
  extern __shared__ float smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float4* s_q = reinterpret_cast<float4*>(smem + warp * kDecodeDim);
  const int64_t t0 = p.groups[blockIdx.x] & 0xFFFFFF;
  const int h = blockIdx.y * job.hpc + warp;
  const int kvh = h / (s.n_heads / s.n_kv_heads);
  const int64_t kv_dim = static_cast<int64_t>(s.n_kv_heads) * kDecodeDim;
  const int64_t pos = p.positions[t0];
  int64_t k0, k1;
  split_keys(pos + 1, job.min_split_keys, k0, k1);
  if (k0 + lane < k1) prefetch_block_slot(p, t0, k0 + lane);  // before the wait
  wait_for_inputs();
  const float scale = rsqrtf(static_cast<float>(kDecodeDim));
  float4 qv = reinterpret_cast<const float4*>(job.q + (t0 * s.n_heads + h) * kDecodeDim)[lane];
  qv.x *= scale, qv.y *= scale, qv.z *= scale, qv.w *= scale;
  s_q[lane] = qv;
  __syncwarp();
  float m = -INFINITY, l = 0.f, acc[4] = {0.f, 0.f, 0.f, 0.f};
  for (int64_t tile = k0; tile < k1; tile += 32) {
    const int64_t key = tile + lane;
    float sc = -INFINITY;
    unsigned long long my_v = 0;
    if (key < k1) {
      const KvRow row = kv_row(p, t0, key, job.layer, 2 * kv_dim);
      const uint4* kr = reinterpret_cast<const uint4*>(reinterpret_cast<const __half*>(row.k) + kvh * kDecodeDim);
      my_v = reinterpret_cast<unsigned long long>(reinterpret_cast<const __half*>(row.v) + kvh * kDecodeDim);
      uint4 kq[kDecodeDim / 8];
#pragma unroll
      for (int i = 0; i < kDecodeDim / 8; ++i) kq[i] = kr[i];
      float d = 0.f;
#pragma unroll
      for (int i = 0; i < kDecodeDim / 8; ++i) {
        const float4 a = s_q[2 * i], b = s_q[2 * i + 1];
        const __half2* hk = reinterpret_cast<const __half2*>(&kq[i]);
        const float2 f0 = __half22float2(hk[0]), f1 = __half22float2(hk[1]), f2 = __half22float2(hk[2]), f3 = __half22float2(hk[3]);
        d += a.x * f0.x + a.y * f0.y + a.z * f1.x + a.w * f1.y + b.x * f2.x + b.y * f2.y + b.z * f3.x + b.w * f3.y;
      }
      sc = d;
    }
    // A tile has at least one key (tile < k1): m_new is finite.
    const float m_new = fmaxf(m, warp_max(sc));
    const float corr = __expf(m - m_new), pr = key < k1 ? __expf(sc - m_new) : 0.f;
    l = l * corr + pr;  // this lane's share; summed over the warp at the end
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[e] *= corr;
    m = m_new;
    const int n = k1 - tile < 32 ? static_cast<int>(k1 - tile) : 32;
    uint2 vv[32];
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      const uint2* vr = reinterpret_cast<const uint2*>(__shfl_sync(0xffffffffu, my_v, j));
      if (j < n) vv[j] = vr[lane];
    }
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      const float pj = __shfl_sync(0xffffffffu, pr, j);
      if (j < n) {
        const __half2* hv = reinterpret_cast<const __half2*>(&vv[j]);
        const float2 a = __half22float2(hv[0]), b = __half22float2(hv[1]);
        acc[0] += pj * a.x, acc[1] += pj * a.y, acc[2] += pj * b.x, acc[3] += pj * b.y;
      }
    }
  }
  l = warp_add(l);
  const int64_t th = t0 * s.n_heads + h;  // (token, head)
  if (!job.partial) {
    const float4 v = make_float4(acc[0] / l, acc[1] / l, acc[2] / l, acc[3] / l);
    reinterpret_cast<float4*>(job.out + th * kDecodeDim)[lane] = v;
    if (job.q8.q) store_q8x4(v, true, (th * kDecodeDim + 4 * lane) >> 5, lane, job.q8.q, job.q8.ds);
  } else {  // this split's unnormalised sums, max and denominator (attention_merge_kernel's layout)
    const int64_t rec = th * gridDim.z + blockIdx.z;
    reinterpret_cast<float4*>(job.partial + rec * kDecodeDim)[lane] = make_float4(acc[0], acc[1], acc[2], acc[3]);
    if (lane == 0) reinterpret_cast<float2*>(job.partial + p.tokens * s.n_heads * gridDim.z * kDecodeDim)[rec] = make_float2(m, l);
  }
}

// Merges the splits of each (token, head): flash-decoding's second step.
// `partial` holds every (token, head)'s split sums [T * H][splits][hd],
// then their (max, denominator) pairs [T * H][splits]. Each split's weight
// exp(m_i - M) once, in shared memory; then the threads take the vectors
// four dimensions and every G-th split each (G = 128 / (hd / 4) groups),
// four 16-byte loads in flight, and the groups' sums meet in shared memory.
// The first version gave each thread one dimension over all the splits:
// at 128 splits that was 16 rounds of dependent loads, and 128 splits of
// 32K keys ran slower (101 us a layer) than 64 (88 us).
constexpr int kMergeThreads = 128;
constexpr int kMaxSplits = 1024;
__global__ void __launch_bounds__(kMergeThreads) attention_merge_kernel(const float* partial, int splits, int n_heads, int hd,
                                                                        float* out, Q8Rows q8) {
  wait_for_inputs();
  __shared__ float wgt[kMaxSplits];
  __shared__ float red[kMergeThreads / 32];
  __shared__ float4 sums[kMergeThreads];
  const int64_t th = static_cast<int64_t>(blockIdx.x) * n_heads + blockIdx.y;
  const float* vecs = partial + th * splits * hd;
  const float2* stats = reinterpret_cast<const float2*>(partial + static_cast<int64_t>(gridDim.x) * n_heads * splits * hd) + th * splits;
  // The first round's vectors are loaded before the weights are worked
  // out (they do not depend on them): one round trip fewer in a step's chain.
  const int per = hd / 4, groups = kMergeThreads / per, g = threadIdx.x / per, c = threadIdx.x % per;
  const float4* v = reinterpret_cast<const float4*>(vecs) + c;
  float4 first[4];
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const int i = g + u * groups;
    first[u] = g < groups && i < splits ? v[static_cast<int64_t>(i) * per] : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  float M = -INFINITY;
  for (int i = threadIdx.x; i < splits; i += blockDim.x) {
    const float2 st = stats[i];
    if (st.y > 0.f) M = fmaxf(M, st.x);
  }
  M = warp_max(M);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = M;
  __syncthreads();
  M = -INFINITY;
  for (int w = 0; w < kMergeThreads / 32; ++w) M = fmaxf(M, red[w]);
  __syncthreads();  // red is reused for the denominator
  float L = 0.f;
  for (int i = threadIdx.x; i < splits; i += blockDim.x) {
    const float2 st = stats[i];
    const float wi = st.y > 0.f ? __expf(st.x - M) : 0.f;
    wgt[i] = wi;
    L += st.y * wi;
  }
  L = warp_add(L);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = L;
  __syncthreads();  // also publishes wgt
  L = 0.f;
  for (int w = 0; w < kMergeThreads / 32; ++w) L += red[w];
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  if (g < groups) {
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int i = g + u * groups;
      const float wi = i < splits ? wgt[i] : 0.f;
      acc.x += wi * first[u].x, acc.y += wi * first[u].y, acc.z += wi * first[u].z, acc.w += wi * first[u].w;
    }
    int i = g + 4 * groups;
    for (; i + 3 * groups < splits; i += 4 * groups) {
      const float4 x0 = v[static_cast<int64_t>(i) * per], x1 = v[static_cast<int64_t>(i + groups) * per],
                   x2 = v[static_cast<int64_t>(i + 2 * groups) * per], x3 = v[static_cast<int64_t>(i + 3 * groups) * per];
      const float w0 = wgt[i], w1 = wgt[i + groups], w2 = wgt[i + 2 * groups], w3 = wgt[i + 3 * groups];
      acc.x += w0 * x0.x + w1 * x1.x + w2 * x2.x + w3 * x3.x;
      acc.y += w0 * x0.y + w1 * x1.y + w2 * x2.y + w3 * x3.y;
      acc.z += w0 * x0.z + w1 * x1.z + w2 * x2.z + w3 * x3.z;
      acc.w += w0 * x0.w + w1 * x1.w + w2 * x2.w + w3 * x3.w;
    }
    for (; i < splits; i += groups) {
      const float4 x = v[static_cast<int64_t>(i) * per];
      const float wi = wgt[i];
      acc.x += wi * x.x, acc.y += wi * x.y, acc.z += wi * x.z, acc.w += wi * x.w;
    }
  }
  sums[threadIdx.x] = acc;
  __syncthreads();
  const float* sf = reinterpret_cast<const float*>(sums);  // group gg's dimension j: sf[gg * hd + j]
  float* o = out + th * hd;
  for (int j = threadIdx.x; j < hd; j += blockDim.x) {
    float v = 0.f;
    for (int gg = 0; gg < groups; ++gg) v += sf[gg * hd + j];
    const float oj = v / L;
    o[j] = oj;
    if (q8.q) store_q8(oj, (th * hd + j) >> 5, threadIdx.x & 31, q8.q, q8.ds);  // hd % 32 == 0
  }
}

// The fewest keys a split takes, and the most (group, head, split) blocks
// the splits may make (`umi_cuda_attention`, session 9, batch 1 on the
// 8B's 8 KV heads: splits of 32 keys took 11-16 us a layer at 64-1024
// keys where the splits of 256 took 14-36; from 4K keys, 64 splits beat 128).
constexpr int64_t kSplitKeys = 32;
constexpr int64_t kSplitBlocks = 512;

int max_rows(int head_dim) { return head_dim <= 128 ? 16 : 8; }

// The q heads of a block: the largest divisor of the group size that fits.
int heads_per_block(const HeadShape& s) {
  const int group = s.n_heads / s.n_kv_heads;
  for (int h = std::min(group, max_rows(s.head_dim)); h > 1; --h)
    if (group % h == 0) return h;
  return 1;
}

template <typename KV, int E, int R>
void launch_kernel(const AttentionJob& job, dim3 grid, cudaStream_t stream) {
  const size_t smem = smem_floats(R, job.s.head_dim) * sizeof(float);
  launch(attention_kernel<KV, E, R>, grid, 32 * kWarps, smem, stream, job);
}

// R, the rows a block holds, fits the pass: decode passes (one token per
// group) hold only the group's q heads, and fewer rows leave registers for
// more loads in flight.
template <typename KV, int E, int RMax>
void launch_for_rows(const AttentionJob& job, dim3 grid, int rows, cudaStream_t stream) {
  if (rows <= 4) launch_kernel<KV, E, 4>(job, grid, stream);
  else if (rows <= 8 || RMax == 8) launch_kernel<KV, E, 8>(job, grid, stream);
  else launch_kernel<KV, E, RMax>(job, grid, stream);
}

template <typename KV>
void launch_for_dim(const AttentionJob& job, dim3 grid, int rows, cudaStream_t stream) {
  const int hd = job.s.head_dim;
  if (hd <= 32) launch_for_rows<KV, 1, 16>(job, grid, rows, stream);
  else if (hd <= 64) launch_for_rows<KV, 2, 16>(job, grid, rows, stream);
  else if (hd <= 128) launch_for_rows<KV, 4, 16>(job, grid, rows, stream);
  else launch_for_rows<KV, 8, 8>(job, grid, rows, stream);
}

size_t partial_floats_for(int64_t tokens, int n_heads, int head_dim, int64_t splits) {
  return static_cast<size_t>(tokens) * static_cast<size_t>(n_heads) * static_cast<size_t>(splits) * static_cast<size_t>(head_dim + 2);
}

}  // namespace

int attention_tokens_per_group(const HeadShape& shape, DType kv_dtype) {
  if (shape.n_heads <= 0 || shape.n_kv_heads <= 0 || shape.n_heads % shape.n_kv_heads != 0) return 1;
  if (mma_attention_supports(shape, kv_dtype)) return mma_attention_tokens_per_group(heads_per_block(shape));
  return std::max(1, max_rows(shape.head_dim) / heads_per_block(shape));
}

cudaError_t attention(const KvPass& pass, const HeadShape& shape, int64_t layer, const float* q, float* out, const Q8Rows* q8,
                      int64_t max_position, const AttentionSplits& scratch, cudaStream_t stream) {
  check_kv_pass(pass, shape, "attention");
  if (!(q && out && layer >= 0 && max_position >= 0 && pass.groups && pass.n_groups > 0 && pass.n_groups <= pass.tokens &&
        pass.n_groups < (int64_t{1} << 31) && scratch.min_keys >= 0))
    throw Error("cuda attention: bad operand");
  if (reinterpret_cast<uintptr_t>(q) % 16 != 0) throw Error("cuda attention: q must be 16-byte aligned");
  if (q8 && !(q8->q && q8->ds && shape.head_dim % 32 == 0 && q8->n >= pass.tokens * shape.n_heads * shape.head_dim))
    throw Error("cuda attention: the quantized output needs head_dim a multiple of 32 and room for every value");
  const Q8Rows q8_out = q8 ? *q8 : Q8Rows{};
  const int hpc = heads_per_block(shape);
  AttentionJob job;
  job.p = pass;
  job.s = shape;
  job.hpc = hpc;
  job.layer = layer;
  job.q = q;
  job.out = out;
  job.q8 = q8_out;
  // Groups of several tokens (prefill chunks, and the decode tokens beside
  // them) on the tensor cores where the kernel takes the shape: one split.
  if (pass.n_groups < pass.tokens && mma_attention_supports(shape, pass.kv_dtype)) {
    mma_attention(job, stream);
    return cudaGetLastError();
  }
  // Enough (group, head, split) blocks to fill the GPU, splits of at least
  // min_keys keys, no more than the partials buffer holds.
  const int64_t min_keys = scratch.min_keys > 0 ? scratch.min_keys : kSplitKeys;
  const int64_t blocks = pass.n_groups * (shape.n_heads / hpc);
  int64_t splits = std::min<int64_t>((max_position + min_keys) / min_keys, std::max<int64_t>(1, kSplitBlocks / blocks));
  while (splits > 1 &&
         (!scratch.partial || partial_floats_for(pass.tokens, shape.n_heads, shape.head_dim, splits) > scratch.floats))
    --splits;
  splits = std::max<int64_t>(1, std::min<int64_t>(splits, kMaxSplits));  // the merge keeps a weight per split
  const dim3 grid(static_cast<unsigned>(pass.n_groups), static_cast<unsigned>(shape.n_heads / hpc), static_cast<unsigned>(splits));
  if (splits > 1) job.q8 = Q8Rows{};  // split: the merge writes out
  job.min_split_keys = min_keys;
  job.partial = splits > 1 ? scratch.partial : nullptr;
  // Rows per block: the group's q heads times its tokens (one each when every group is one token).
  const int rows = hpc * (pass.n_groups == pass.tokens ? 1 : attention_tokens_per_group(shape, pass.kv_dtype));
  // A warp a q head (decode_attention_kernel) when each group is one token,
  // the context short and no split longer than kDecodeSplitKeys keys.
  const int64_t most_keys = std::max(min_keys, (max_position + 1 + splits - 1) / splits);
  if (pass.kv_dtype == DType::F16 && shape.head_dim == kDecodeDim && pass.n_groups == pass.tokens && hpc <= 16 &&
      most_keys <= kDecodeSplitKeys && max_position < kDecodeMaxKeys && reinterpret_cast<uintptr_t>(out) % 16 == 0 &&
      reinterpret_cast<uintptr_t>(job.partial) % 16 == 0)  // its 16-byte stores
    launch(hpc <= 4 ? decode_attention_kernel<4> : decode_attention_kernel<16>, grid, 32 * hpc,
           static_cast<size_t>(hpc) * kDecodeDim * sizeof(float), stream, job);
  else if (pass.kv_dtype == DType::F16) launch_for_dim<__half>(job, grid, rows, stream);
  else if (pass.kv_dtype == DType::Q8_0) launch_for_dim<KvQ8>(job, grid, rows, stream);
  else launch_for_dim<float>(job, grid, rows, stream);
  if (splits > 1) {
    const dim3 merge_grid(static_cast<unsigned>(pass.tokens), static_cast<unsigned>(shape.n_heads));
    launch(attention_merge_kernel, merge_grid, kMergeThreads, 0, stream, static_cast<const float*>(scratch.partial), static_cast<int>(splits),
           shape.n_heads, shape.head_dim, out, q8_out);
  }
  return cudaGetLastError();
}

}  // namespace umi::cuda
