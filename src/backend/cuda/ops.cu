// Kernels of the CUDA forward pass, first versions: one warp per matrix row
// or head, f32 arithmetic, weights read in their file dtype. The batch-1
// quantized matvec (quant_matvec.cu) is the tuned one; these favour being
// obviously right, each checked against the CPU backend on the device.
#include "backend/cuda/ops.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <string>
#include <type_traits>

#include "backend/cuda/kquant.cuh"
#include "backend/cuda/kv_pass.cuh"
#include "backend/cuda/q8_store.cuh"
#include "backend/cuda/split_blocks.cuh"
#include "backend/cuda/vector_value.cuh"
#include "backend/cuda/launch.cuh"
#include "core/error.h"

namespace umi::cuda {

namespace {

enum Kind { kF32, kF16, kBF16, kQ8, kQ4, kQ4K, kQ5K, kQ6K };

int kind_of(DType t) {
  switch (t) {
    case DType::F32: return kF32;
    case DType::F16: return kF16;
    case DType::BF16: return kBF16;
    case DType::Q8_0: return kQ8;
    case DType::Q4_0: return kQ4;
    case DType::Q4_K: return kQ4K;
    case DType::Q5_K: return kQ5K;
    case DType::Q6_K: return kQ6K;
    default: return -1;
  }
}

// Calls f(std::integral_constant<int, K>{}) for a matrix kind: one launch
// site per kernel for every weight type.
template <class F>
void by_kind(int kind, F&& f) {
  switch (kind) {
    case kF32: f(std::integral_constant<int, kF32>{}); break;
    case kF16: f(std::integral_constant<int, kF16>{}); break;
    case kBF16: f(std::integral_constant<int, kBF16>{}); break;
    case kQ8: f(std::integral_constant<int, kQ8>{}); break;
    case kQ4: f(std::integral_constant<int, kQ4>{}); break;
    case kQ4K: f(std::integral_constant<int, kQ4K>{}); break;
    case kQ5K: f(std::integral_constant<int, kQ5K>{}); break;
    default: f(std::integral_constant<int, kQ6K>{}); break;
  }
}

__host__ __device__ constexpr bool is_kquant(int k) { return k == kQ4K || k == kQ5K || k == kQ6K; }
// Values per block of a kind (32 for the float kinds: their "groups").
__host__ __device__ constexpr int block_values(int k) { return is_kquant(k) ? 256 : 32; }

// A matrix row where the kernels find it: float types, Q4_K and Q5_K at p;
// Q8_0/Q4_0/Q6_K in the split layout (quant_layout.h): the row's quants at p,
// its scales at d.
struct RowRef {
  const unsigned char* p;
  const __half* d;
};

template <int K>
__device__ inline RowRef row_ref(const unsigned char* base, int64_t rows, int64_t cols, int64_t r) {
  if constexpr (K == kF32) {
    return {base + r * cols * 4, nullptr};
  } else if constexpr (K == kF16 || K == kBF16) {
    return {base + r * cols * 2, nullptr};
  } else if constexpr (K == kQ4K || K == kQ5K) {
    return {base + r * (cols / 256) * (K == kQ4K ? kQ4KBytes : kQ5KBytes), nullptr};
  } else {
    constexpr int qb = K == kQ8 ? 32 : K == kQ4 ? 16 : kQ6KQuantBytes;
    const int64_t per_row = cols / block_values(K);
    const SplitBlocks<qb> m(base, rows * per_row);
    return {m.q(r * per_row), m.scales + r * per_row};
  }
}

// Element j of a row.
template <int K>
__device__ inline float wval(RowRef row, int64_t j) {
  if constexpr (K == kF32) {
    return reinterpret_cast<const float*>(row.p)[j];
  } else if constexpr (K == kF16) {
    return __half2float(reinterpret_cast<const __half*>(row.p)[j]);
  } else if constexpr (K == kBF16) {
    return __uint_as_float(static_cast<unsigned>(reinterpret_cast<const unsigned short*>(row.p)[j]) << 16);
  } else if constexpr (K == kQ8) {
    return __half2float(row.d[j >> 5]) * static_cast<float>(static_cast<signed char>(row.p[j]));
  } else if constexpr (K == kQ4) {
    const int i = static_cast<int>(j & 31);
    const unsigned char byte = row.p[(j >> 5) * 16 + (i & 15)];
    const int q = i < 16 ? (byte & 15) : (byte >> 4);
    return __half2float(row.d[j >> 5]) * static_cast<float>(q - 8);
  } else if constexpr (K == kQ4K || K == kQ5K) {
    return q45k_value(row.p + (j >> 8) * (K == kQ4K ? kQ4KBytes : kQ5KBytes), static_cast<int>(j & 255), K == kQ5K);
  } else {
    return q6k_value(row.p + (j >> 8) * kQ6KQuantBytes, __half2float(row.d[j >> 8]), static_cast<int>(j & 255));
  }
}

__device__ inline float warp_sum(float s) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  return s;
}

__device__ inline float warp_max(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// ---- embed ------------------------------------------------------------------

template <int K>
__global__ void embed_kernel(const unsigned char* table, int64_t rows, int64_t cols, const int32_t* ids, float* x) {
  wait_for_inputs();
  const int64_t t = blockIdx.x;
  const RowRef row = row_ref<K>(table, rows, cols, ids[t]);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) x[t * cols + j] = wval<K>(row, j);
}

// ---- matmul -----------------------------------------------------------------

constexpr int kRowsPerBlock = 4;
constexpr int kTokensPerPass = 8;

__host__ __device__ constexpr bool is_float_kind(int k) { return k == kF32 || k == kF16 || k == kBF16; }

// Float weights, 16 bytes a lane a step (8 f16/bf16 values or 4 f32; rows
// are whole 16-byte units: columns a multiple of 32), each converted once
// for the pass's n tokens, whose activations are read as float4s. An 8-token
// pass over the 8B shape's BF16 weights streams ~0.8 TB/s where one value a
// lane did ~0.27; the backend sends 9 tokens or more to cuBLAS. Tried and
// slower or no faster (session 24, 8 streams of the 8B BF16 model): 2 or 4
// rows a warp sharing the activation reads (376 / 371 tok/s against 381),
// 4 or 8 of these 16-byte loads in flight before use (286 / 273 against 383).
template <int K>
__device__ inline void float_row_pass(RowRef row, int64_t cols, const float* __restrict__ x, int n, float (&acc)[kTokensPerPass],
                                      int lane) {
  constexpr int V = K == kF32 ? 4 : 8;
  for (int64_t j = static_cast<int64_t>(lane) * V; j < cols; j += 32 * V) {
    const uint4 raw = *reinterpret_cast<const uint4*>(row.p + j * (K == kF32 ? 4 : 2));
    const unsigned words[4] = {raw.x, raw.y, raw.z, raw.w};
    float wv[V];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      if constexpr (K == kF32) {
        wv[q] = __uint_as_float(words[q]);
      } else if constexpr (K == kF16) {
        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&words[q]));
        wv[2 * q] = f.x, wv[2 * q + 1] = f.y;
      } else {
        wv[2 * q] = __uint_as_float(words[q] << 16), wv[2 * q + 1] = __uint_as_float(words[q] & 0xFFFF0000u);
      }
    }
#pragma unroll
    for (int i = 0; i < kTokensPerPass; ++i) {
      if (i >= n) break;
      const float4* xi = reinterpret_cast<const float4*>(x + i * cols + j);
#pragma unroll
      for (int h = 0; h < V / 4; ++h) {
        const float4 a = xi[h];
        acc[i] += wv[4 * h] * a.x + wv[4 * h + 1] * a.y + wv[4 * h + 2] * a.z + wv[4 * h + 3] * a.w;
      }
    }
  }
}

// One warp per row; the row is swept once per group of 8 tokens, each weight
// dequantized once for all of them.
template <int K>
__global__ void __launch_bounds__(32 * kRowsPerBlock) matmul_kernel(const unsigned char* w, int64_t rows,
                                                                     int64_t cols, const float* __restrict__ x,
                                                                     int64_t tokens, float* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;
  const RowRef row = row_ref<K>(w, rows, cols, r);
  for (int64_t t0 = 0; t0 < tokens; t0 += kTokensPerPass) {
    const int n = static_cast<int>(tokens - t0 < kTokensPerPass ? tokens - t0 : kTokensPerPass);
    float acc[kTokensPerPass] = {};
    if constexpr (is_float_kind(K)) {
      float_row_pass<K>(row, cols, x + t0 * cols, n, acc, lane);
    } else {
      for (int64_t j = lane; j < cols; j += 32) {
        const float wj = wval<K>(row, j);
#pragma unroll
        for (int i = 0; i < kTokensPerPass; ++i)
          if (i < n) acc[i] += wj * x[(t0 + i) * cols + j];
      }
    }
#pragma unroll
    for (int i = 0; i < kTokensPerPass; ++i) {
      if (i >= n) break;
      const float s = warp_sum(acc[i]);
      if (lane == 0) y[(t0 + i) * rows + r] = s;
    }
  }
}

// One thread per 32-value group of the slice (groups are contiguous in
// every layout: a row's groups follow each other and rows do too): 64 bytes
// of f16 out as four 16-byte stores.
template <int K>
__global__ void dequantize_f16_kernel(const unsigned char* w, int64_t total_groups, int64_t first, int64_t groups, __half* out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= groups) return;
  const int64_t g = first + i;
  // Group g's block seen as a one-block row of its matrix's layout, and
  // where in it the group starts (K-quant blocks hold eight groups).
  constexpr int kGroups = block_values(K) / 32;
  const int at = static_cast<int>(g % kGroups) * 32;
  const RowRef group = row_ref<K>(w, total_groups / kGroups, block_values(K), g / kGroups);
  __align__(16) __half h[32];
#pragma unroll
  for (int j = 0; j < 32; ++j) h[j] = __float2half(wval<K>(group, at + j));
  uint4* o = reinterpret_cast<uint4*>(out + i * 32);
#pragma unroll
  for (int j = 0; j < 4; ++j) o[j] = reinterpret_cast<const uint4*>(h)[j];
}

template <typename H>
__global__ void to_half_kernel(const float* x, int64_t n, H* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = static_cast<H>(x[i]);
}

// ---- norms and element-wise ------------------------------------------------

constexpr int kNormThreads = 256;

__device__ inline float block_sum(float v, float* partial) {  // partial: blockDim.x / 32 floats
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = v;
  __syncthreads();
  float total = 0.f;
  for (int i = 0; i < static_cast<int>(blockDim.x >> 5); ++i) total += partial[i];
  return total;
}

// With q8 set, the output is also quantized (n a multiple of 32: a warp's
// 32 consecutive values are one block). Any n; rows of up to kNormVec *
// 4 * 1024 values that are a multiple of 4 take rms_norm_vec_kernel.
__global__ void rms_norm_kernel(const float* x, const void* w, DType wt, int64_t n, float eps, float* out, Q8Rows q8) {
  wait_for_inputs();
  __shared__ float partial[kNormThreads / 32];
  const float* xr = x + blockIdx.x * n;
  float* o = out + blockIdx.x * n;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
  const float scale = rsqrtf(block_sum(ss, partial) / static_cast<float>(n) + eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = xr[i] * scale * vector_value(w, wt, i);
    o[i] = v;
    if (q8.q) store_q8(v, (blockIdx.x * n + i) >> 5, threadIdx.x & 31, q8.q, q8.ds);
  }
}

// The row read once, in 16-byte loads all issued before the sum: each
// thread keeps kNormVec float4s (4 consecutive values each; step k of
// thread t holds values 4 (t + k blockDim) ..). The first version looped
// over single floats twice with a dependent sum: 15 us a row of 4096 on the
// H100, a fifth of a decode step in 65 launches (kernel trace, session 7).
constexpr int kNormVec = 4;
__global__ void __launch_bounds__(1024) rms_norm_vec_kernel(const float* x, const void* w, DType wt, int64_t n, float eps,
                                                             float* out, Q8Rows q8) {
  __shared__ float partial[32];
  const float4* xr = reinterpret_cast<const float4*>(x + blockIdx.x * n);
  float4* o = reinterpret_cast<float4*>(out + blockIdx.x * n);
  const int64_t n4 = n / 4;
  // The weights first, before the wait (no kernel writes them; they come from
  // device memory while the product before finishes), then x.
  float4 v[kNormVec], g[kNormVec];
#pragma unroll
  for (int k = 0; k < kNormVec; ++k) {
    const int64_t i = threadIdx.x + k * static_cast<int64_t>(blockDim.x);
    g[k] = i < n4 ? make_float4(vector_value(w, wt, 4 * i), vector_value(w, wt, 4 * i + 1), vector_value(w, wt, 4 * i + 2),
                                vector_value(w, wt, 4 * i + 3))
                  : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  wait_for_inputs();
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < kNormVec; ++k) {
    const int64_t i = threadIdx.x + k * static_cast<int64_t>(blockDim.x);
    v[k] = i < n4 ? xr[i] : make_float4(0.f, 0.f, 0.f, 0.f);
    ss += v[k].x * v[k].x + v[k].y * v[k].y + v[k].z * v[k].z + v[k].w * v[k].w;
  }
  const float scale = rsqrtf(block_sum(ss, partial) / static_cast<float>(n) + eps);
#pragma unroll
  for (int k = 0; k < kNormVec; ++k) {
    const int64_t i = threadIdx.x + k * static_cast<int64_t>(blockDim.x);
    if (k * static_cast<int64_t>(blockDim.x) >= n4) break;  // the whole block agrees: the warp's shuffles stay together
    float4 r = v[k];
    if (i < n4) {
      r.x *= scale * g[k].x;
      r.y *= scale * g[k].y;
      r.z *= scale * g[k].z;
      r.w *= scale * g[k].w;
      o[i] = r;
    }
    // n4 is a multiple of 8 when q8 is set (n % 32 == 0), so a block's 8 lanes are all in or all out.
    if (q8.q) store_q8x4(r, i < n4, (blockIdx.x * n4 + i) >> 3, threadIdx.x & 31, q8.q, q8.ds);
  }
}

__global__ void add_bias_kernel(float* x, const void* b, DType bt, int64_t n, int64_t total) {
  wait_for_inputs();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] += vector_value(b, bt, i % n);
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  wait_for_inputs();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

__global__ void swiglu_kernel(float* gate, const float* up, int64_t n, Q8Rows q8) {
  wait_for_inputs();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    const float v = g / (1.f + expf(-g)) * up[i];
    gate[i] = v;
    if (q8.q) store_q8(v, i >> 5, threadIdx.x & 31, q8.q, q8.ds);
  }
}

dim3 grid_for(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  return dim3(static_cast<unsigned>(blocks < 65536 ? blocks : 65536));
}

// ---- KV cache ---------------------------------------------------------------

__device__ inline void kv_store(unsigned char* row, int64_t i, float v, bool f16) {
  if (f16) reinterpret_cast<__half*>(row)[i] = __float2half(v);
  else reinterpret_cast<float*>(row)[i] = v;
}

// A head's hd values x (a warp's, hd % 32 == 0) as Q8_0 blocks at `head`
// (kv_pass.cuh), quantized as the CPU's q8_0 KV:
// d = max|x| / 127, q = x / d rounded half away from zero.
__device__ inline void kv_store_q8(unsigned char* head, const float* x, int hd, int lane) {
  for (int c = 0; c < hd / 32; ++c) {
    const float v = x[32 * c + lane];
    const float amax = warp_max(fabsf(v));
    const float d = amax / 127.f, id = d != 0.f ? 1.f / d : 0.f;
    unsigned char* b = head + kQ8KvBlockBytes * c;
    if (lane == 0) *reinterpret_cast<__half*>(b) = __float2half(d);
    reinterpret_cast<signed char*>(b + 2)[lane] = static_cast<signed char>(roundf(v * id));
  }
}

// Grid (tokens, (H + 2 Hkv) / kRopeWarps rounded up), a warp a head: q
// heads, then k heads, then v heads. A block's heads share one token's
// angles, computed once (a block per head computed them 40 times a token:
// 32 us a layer of a 512-token prefill).
constexpr int kRopeWarps = 8;
__global__ void __launch_bounds__(32 * kRopeWarps)
    rope_store_kernel(KvPass p, HeadShape s, int64_t layer, float* q, float* k, const float* v, WeightVector qn,
                      WeightVector kn, float eps, const float* inv_freq, bool interleaved) {
  __shared__ float cos_s[kMaxHeadDim / 2], sin_s[kMaxHeadDim / 2];
  const int64_t t = blockIdx.x;
  const int h = blockIdx.y * kRopeWarps + (threadIdx.x >> 5), lane = threadIdx.x & 31, hd = s.head_dim, half = hd / 2;
  const int64_t kv_dim = static_cast<int64_t>(s.n_kv_heads) * hd;
  // The pass's tables were copied before the step's first kernel and no
  // kernel writes them: where this token's KV row goes is found before the
  // wait, while the q/k/v product finishes.
  const int64_t pos = p.positions[t];
  const bool f16 = p.kv_dtype == DType::F16, q8 = p.kv_dtype == DType::Q8_0;
  const KvRow dst = kv_row(p, t, pos, layer, kv_row_bytes(p.kv_dtype, kv_dim));
  // The rotation's angles too (positions and frequencies are tables; in a
  // decode step RoPE then added 1.6 us a layer instead of 2.0).
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    double sn, cs;
    sincos(static_cast<double>(pos) * inv_freq[i], &sn, &cs);
    cos_s[i] = static_cast<float>(cs);
    sin_s[i] = static_cast<float>(sn);
  }
  __syncthreads();
  wait_for_inputs();
  if (h >= s.n_heads + 2 * s.n_kv_heads) return;
  if (h >= s.n_heads + s.n_kv_heads) {  // a V head: stored as is
    const int kvh = h - s.n_heads - s.n_kv_heads;
    if (q8) kv_store_q8(dst.v + kv_row_bytes(DType::Q8_0, kvh * hd), v + t * kv_dim + kvh * hd, hd, lane);
    else
      for (int i = lane; i < hd; i += 32) kv_store(dst.v, kvh * hd + i, v[t * kv_dim + kvh * hd + i], f16);
    return;
  }
  const bool is_q = h < s.n_heads;
  const int kvh = h - s.n_heads;
  float* x = is_q ? q + (t * s.n_heads + h) * hd : k + t * kv_dim + static_cast<int64_t>(kvh) * hd;
  const WeightVector& norm = is_q ? qn : kn;
  auto pair = [&](int i, int* a, int* b) {
    *a = interleaved ? 2 * i : i;
    *b = interleaved ? 2 * i + 1 : i + half;
  };
  float scale = 1.f;
  if (norm.data) {
    float ss = 0.f;
    for (int i = lane; i < half; i += 32) {
      int a, b;
      pair(i, &a, &b);
      ss += x[a] * x[a] + x[b] * x[b];
    }
    scale = rsqrtf(warp_sum(ss) / static_cast<float>(hd) + eps);
  }
  for (int i = lane; i < half; i += 32) {
    int a, b;
    pair(i, &a, &b);
    float xa = x[a] * scale, xb = x[b] * scale;
    if (norm.data) {
      xa *= vector_value(norm.data, norm.dtype, a);
      xb *= vector_value(norm.data, norm.dtype, b);
    }
    const float c = cos_s[i], si = sin_s[i];
    const float ra = xa * c - xb * si, rb = xb * c + xa * si;
    x[a] = ra;
    x[b] = rb;
    if (!is_q && !q8) {
      kv_store(dst.k, kvh * hd + a, ra, f16);
      kv_store(dst.k, kvh * hd + b, rb, f16);
    }
  }
  if (!is_q && q8) {  // blocks of 32 consecutive values, whichever lanes rotated them
    __syncwarp();
    kv_store_q8(dst.k + kv_row_bytes(DType::Q8_0, kvh * hd), x, hd, lane);
  }
}

void check(bool ok, const std::string& what) {
  if (!ok) throw Error("cuda " + what);
}

}  // namespace

bool ops_support_matrix(DType t) { return kind_of(t) >= 0; }
bool ops_support_vector(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }
bool ops_support_kv(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::Q8_0; }

cudaError_t embed(const WeightMatrix& table, const int32_t* ids, int64_t tokens, float* x, cudaStream_t stream) {
  check(ops_support_matrix(table.dtype), "embed: unsupported table type " + std::string(to_string(table.dtype)));
  check(table.data && ids && x && tokens > 0 && tokens < (int64_t{1} << 31) && table.cols > 0, "embed: bad arguments");
  check(table.cols % dtype_info(table.dtype).block_elems == 0, "embed: columns not in whole blocks");
  const auto* data = static_cast<const unsigned char*>(table.data);
  const dim3 grid(static_cast<unsigned>(tokens)), block(256);
  by_kind(kind_of(table.dtype), [&](auto k) {
    launch(embed_kernel<decltype(k)::value>, grid, block, 0, stream, data, table.rows, table.cols, ids, x);
  });
  return cudaGetLastError();
}

cudaError_t matmul_generic(const WeightMatrix& w, const float* x, int64_t tokens, float* y, cudaStream_t stream) {
  check(ops_support_matrix(w.dtype), "matmul: unsupported weight type " + std::string(to_string(w.dtype)));
  check(w.data && x && y && tokens > 0 && w.rows > 0 && w.cols > 0, "matmul: bad arguments");
  check(w.cols % dtype_info(w.dtype).block_elems == 0, "matmul: columns not in whole blocks");
  check(w.rows < (int64_t{1} << 31) * kRowsPerBlock, "matmul: too many rows");
  check(!is_float_kind(kind_of(w.dtype)) ||
            (w.cols % 8 == 0 && reinterpret_cast<uintptr_t>(w.data) % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0),
        "matmul: float weights and activations must be 16-byte aligned in whole 16-byte rows");
  const auto* data = static_cast<const unsigned char*>(w.data);
  const dim3 grid(static_cast<unsigned>((w.rows + kRowsPerBlock - 1) / kRowsPerBlock)), block(32 * kRowsPerBlock);
  by_kind(kind_of(w.dtype), [&](auto k) {
    matmul_kernel<decltype(k)::value><<<grid, block, 0, stream>>>(data, w.rows, w.cols, x, tokens, y);
  });
  return cudaGetLastError();
}

cudaError_t dequantize_f16(const WeightMatrix& w, int64_t row0, int64_t rows, void* out, cudaStream_t stream) {
  check(ops_support_matrix(w.dtype) && w.data && out && row0 >= 0 && rows > 0 && row0 + rows <= w.rows && w.cols > 0,
        "dequantize_f16: bad arguments");
  check(w.cols % 32 == 0 && w.cols % dtype_info(w.dtype).block_elems == 0,
        "dequantize_f16: columns not a multiple of 32 in whole blocks");
  check(reinterpret_cast<uintptr_t>(w.data) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0,
        "dequantize_f16: pointers must be 16-byte aligned");
  const auto* data = static_cast<const unsigned char*>(w.data);
  const int64_t total = w.rows * (w.cols / 32), first = row0 * (w.cols / 32), groups = rows * (w.cols / 32);
  check((groups + 255) / 256 < (int64_t{1} << 31), "dequantize_f16: too many rows");
  const unsigned grid = static_cast<unsigned>((groups + 255) / 256);
  auto* o = static_cast<__half*>(out);
  by_kind(kind_of(w.dtype), [&](auto k) {
    dequantize_f16_kernel<decltype(k)::value><<<grid, 256, 0, stream>>>(data, total, first, groups, o);
  });
  return cudaGetLastError();
}

cudaError_t to_half(const float* x, int64_t n, DType type, void* out, cudaStream_t stream) {
  check(x && out && n > 0 && (type == DType::F16 || type == DType::BF16), "to_half: bad arguments");
  if (type == DType::F16) to_half_kernel<<<grid_for(n), 256, 0, stream>>>(x, n, static_cast<__half*>(out));
  else to_half_kernel<<<grid_for(n), 256, 0, stream>>>(x, n, static_cast<__nv_bfloat16*>(out));
  return cudaGetLastError();
}

static void check_q8(const Q8Rows* q8, int64_t n, const char* op) {
  if (!q8) return;
  check(q8->q && q8->ds && q8->n == n && n % 32 == 0,
        std::string(op) + ": the q8 output must hold all " + std::to_string(n) + " values, a multiple of 32");
}

cudaError_t rms_norm(const float* x, const WeightVector& w, int64_t rows, float eps, float* out, const Q8Rows* q8,
                     cudaStream_t stream) {
  check(ops_support_vector(w.dtype) && w.data && x && out && rows > 0 && w.size > 0 && rows < (int64_t{1} << 31),
        "rms_norm: bad arguments");
  check_q8(q8, rows * w.size, "rms_norm");
  // A warp quantizes 32 consecutive values of one row: rows of whole blocks.
  check(!q8 || w.size % 32 == 0, "rms_norm: a q8 output needs rows of a multiple of 32 values");
  const int64_t n4 = w.size / 4;
  const bool aligned = (reinterpret_cast<uintptr_t>(x) | reinterpret_cast<uintptr_t>(out)) % 16 == 0;
  if (w.size % 4 == 0 && aligned && n4 <= kNormVec * int64_t{1024}) {
    // The fewest whole warps that cover the row in kNormVec steps.
    const int64_t threads = std::max<int64_t>(32, (n4 + kNormVec * 32 - 1) / (kNormVec * 32) * 32);
    launch(rms_norm_vec_kernel, static_cast<unsigned>(rows), static_cast<unsigned>(threads), 0, stream, x, w.data, w.dtype,
           w.size, eps, out, q8 ? *q8 : Q8Rows{});
  } else {
    launch(rms_norm_kernel, static_cast<unsigned>(rows), kNormThreads, 0, stream, x, w.data, w.dtype, w.size, eps, out,
           q8 ? *q8 : Q8Rows{});
  }
  return cudaGetLastError();
}

cudaError_t add_bias(float* x, const WeightVector& b, int64_t rows, cudaStream_t stream) {
  check(ops_support_vector(b.dtype) && b.data && x && rows > 0 && b.size > 0, "add_bias: bad arguments");
  launch(add_bias_kernel, grid_for(rows * b.size), 256, 0, stream, x, b.data, b.dtype, b.size, rows * b.size);
  return cudaGetLastError();
}

namespace {

// Two steps: blocks of kArgmaxThreads take slices of a row (about
// kArgmaxSlice values each) and keep each slice's best (value, index); one
// warp per row then picks among the slices. Better: larger, or equal and a
// lower index; NaN never compares larger or equal, so it never wins. The
// first version ran one block per row: 50 us for a 128256-value row.
constexpr int kArgmaxThreads = 256;
constexpr int64_t kArgmaxSlice = 2048;
constexpr int64_t kArgmaxMaxSlices = 64;
__device__ inline bool better(float v, int64_t i, float bv, int64_t bi) { return v > bv || (v == bv && i < bi); }

__device__ inline void warp_best(float& bv, int64_t& bi) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    const float v = __shfl_xor_sync(0xffffffffu, bv, off);
    const int64_t j = __shfl_xor_sync(0xffffffffu, bi, off);
    if (better(v, j, bv, bi)) bv = v, bi = j;
  }
}

int64_t argmax_slices(int64_t n) { return std::min(kArgmaxMaxSlices, (n + kArgmaxSlice - 1) / kArgmaxSlice); }

// Grid (slices, rows): slice best into vals/idx [rows][slices].
__global__ void argmax_slice_kernel(const float* __restrict__ x, int64_t n, float* __restrict__ vals, int32_t* __restrict__ idx) {
  wait_for_inputs();
  __shared__ float sv[kArgmaxThreads / 32];
  __shared__ int64_t si[kArgmaxThreads / 32];
  const float* row = x + blockIdx.y * n;
  const int64_t per = (n + gridDim.x - 1) / gridDim.x, begin = blockIdx.x * per, end = min(n, begin + per);
  float bv = -INFINITY;
  int64_t bi = n;  // nothing yet: loses every comparison with a real index
#pragma unroll 4
  for (int64_t i = begin + threadIdx.x; i < end; i += kArgmaxThreads) {
    const float v = row[i];
    if (better(v, i, bv, bi)) bv = v, bi = i;
  }
  warp_best(bv, bi);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) sv[warp] = bv, si[warp] = bi;
  __syncthreads();
  if (warp != 0) return;
  bv = lane < kArgmaxThreads / 32 ? sv[lane] : -INFINITY;
  bi = lane < kArgmaxThreads / 32 ? si[lane] : n;
  warp_best(bv, bi);
  if (lane == 0) {
    vals[blockIdx.y * gridDim.x + blockIdx.x] = bv;
    idx[blockIdx.y * gridDim.x + blockIdx.x] = static_cast<int32_t>(bi);  // n (nothing) fits: n <= INT32_MAX
  }
}

// One warp per row over its slices' bests.
__global__ void argmax_pick_kernel(const float* __restrict__ vals, const int32_t* __restrict__ idx, int slices, int64_t n,
                                   int32_t* __restrict__ ids) {
  wait_for_inputs();
  const int lane = threadIdx.x;
  float bv = -INFINITY;
  int64_t bi = n;
  for (int s = lane; s < slices; s += 32) {
    const float v = vals[blockIdx.x * slices + s];
    const int64_t i = idx[blockIdx.x * slices + s];
    if (better(v, i, bv, bi)) bv = v, bi = i;
  }
  warp_best(bv, bi);
  if (lane == 0) ids[blockIdx.x] = static_cast<int32_t>(bi < n ? bi : 0);  // a row of NaN or -inf: the first
}

}  // namespace

size_t argmax_scratch_bytes(int64_t rows, int64_t n) {
  return rows > 0 && n > 0 ? static_cast<size_t>(rows * argmax_slices(n)) * (sizeof(float) + sizeof(int32_t)) : 0;
}

cudaError_t argmax_rows(const float* x, int64_t rows, int64_t n, int32_t* ids, void* scratch, size_t scratch_bytes,
                        cudaStream_t stream) {
  check(x && ids && scratch && rows > 0 && n > 0 && rows < 65536 && n < INT32_MAX, "argmax_rows: bad arguments");
  check(scratch_bytes >= argmax_scratch_bytes(rows, n) && reinterpret_cast<uintptr_t>(scratch) % 4 == 0,
        "argmax_rows: scratch smaller than argmax_scratch_bytes or misaligned");
  const int64_t slices = argmax_slices(n);
  auto* vals = static_cast<float*>(scratch);
  auto* idx = reinterpret_cast<int32_t*>(vals + rows * slices);
  launch(argmax_slice_kernel, dim3(static_cast<unsigned>(slices), static_cast<unsigned>(rows)), kArgmaxThreads, 0, stream, x, n, vals, idx);
  launch(argmax_pick_kernel, static_cast<unsigned>(rows), 32, 0, stream, vals, idx, static_cast<int>(slices), n, ids);
  return cudaGetLastError();
}

cudaError_t add(float* x, const float* y, int64_t n, cudaStream_t stream) {
  check(x && y && n > 0, "add: bad arguments");
  launch(add_kernel, grid_for(n), 256, 0, stream, x, y, n);
  return cudaGetLastError();
}

cudaError_t swiglu(float* gate, const float* up, int64_t n, const Q8Rows* q8, cudaStream_t stream) {
  check(gate && up && n > 0, "swiglu: bad arguments");
  check_q8(q8, n, "swiglu");
  launch(swiglu_kernel, grid_for(n), 256, 0, stream, gate, up, n, q8 ? *q8 : Q8Rows{});
  return cudaGetLastError();
}

cudaError_t rope_store_kv(const KvPass& pass, const HeadShape& shape, int64_t layer, float* q, float* k, const float* v,
                          const WeightVector& q_norm, const WeightVector& k_norm, float eps, const float* inv_freq,
                          bool interleaved, cudaStream_t stream) {
  check_kv_pass(pass, shape, "rope_store_kv");
  check(q && k && v && inv_freq && layer >= 0, "rope_store_kv: null operand");
  check((!q_norm.data || (ops_support_vector(q_norm.dtype) && q_norm.size == shape.head_dim)) &&
            (!k_norm.data || (ops_support_vector(k_norm.dtype) && k_norm.size == shape.head_dim)),
        "rope_store_kv: q/k norm must have head_dim elements");
  const int heads = shape.n_heads + 2 * shape.n_kv_heads;
  const dim3 grid(static_cast<unsigned>(pass.tokens), static_cast<unsigned>((heads + kRopeWarps - 1) / kRopeWarps));
  launch(rope_store_kernel, grid, 32 * kRopeWarps, 0, stream, pass, shape, layer, q, k, v, q_norm, k_norm, eps, inv_freq,
         interleaved);
  return cudaGetLastError();
}

}  // namespace umi::cuda
