// Kernels of the CUDA forward pass, first versions: one warp per matrix row
// or head, f32 arithmetic, weights read in their file dtype. The batch-1
// quantized matvec (quant_matvec.cu) is the tuned one; these favour being
// obviously right, each checked against the CPU backend on the device.
#include "backend/cuda/ops.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <string>

#include "core/error.h"

namespace umi::cuda {

namespace {

enum Kind { kF32, kF16, kBF16, kQ8, kQ4 };

int kind_of(DType t) {
  switch (t) {
    case DType::F32: return kF32;
    case DType::F16: return kF16;
    case DType::BF16: return kBF16;
    case DType::Q8_0: return kQ8;
    case DType::Q4_0: return kQ4;
    default: return -1;
  }
}

__device__ inline float f16_at(const unsigned char* p) { return __half2float(*reinterpret_cast<const __half*>(p)); }

// Element j of a row in its file dtype.
template <int K>
__device__ inline float wval(const unsigned char* row, int64_t j) {
  if constexpr (K == kF32) {
    return reinterpret_cast<const float*>(row)[j];
  } else if constexpr (K == kF16) {
    return __half2float(reinterpret_cast<const __half*>(row)[j]);
  } else if constexpr (K == kBF16) {
    return __uint_as_float(static_cast<unsigned>(reinterpret_cast<const unsigned short*>(row)[j]) << 16);
  } else if constexpr (K == kQ8) {
    const unsigned char* b = row + (j >> 5) * 34;
    return f16_at(b) * static_cast<float>(static_cast<signed char>(b[2 + (j & 31)]));
  } else {
    const unsigned char* b = row + (j >> 5) * 18;
    const int i = static_cast<int>(j & 31);
    const unsigned char byte = b[2 + (i & 15)];
    const int q = i < 16 ? (byte & 15) : (byte >> 4);
    return f16_at(b) * static_cast<float>(q - 8);
  }
}

__device__ inline float vval(int kind, const void* v, int64_t i) {
  const unsigned char* p = static_cast<const unsigned char*>(v);
  if (kind == kF32) return wval<kF32>(p, i);
  if (kind == kF16) return wval<kF16>(p, i);
  return wval<kBF16>(p, i);
}

size_t row_bytes(DType t, int64_t cols) { return dtype_bytes(t, static_cast<uint64_t>(cols)).value_or(0); }

__device__ inline float warp_sum(float s) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  return s;
}

// ---- embed ------------------------------------------------------------------

template <int K>
__global__ void embed_kernel(const unsigned char* table, size_t row_bytes, int64_t cols, const int32_t* ids, float* x) {
  const int64_t t = blockIdx.x;
  const unsigned char* row = table + static_cast<size_t>(ids[t]) * row_bytes;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) x[t * cols + j] = wval<K>(row, j);
}

// ---- matmul -----------------------------------------------------------------

constexpr int kRowsPerBlock = 4;
constexpr int kTokensPerPass = 8;

// One warp per row; the row is swept once per group of 8 tokens, each weight
// dequantized once for all of them.
template <int K>
__global__ void __launch_bounds__(32 * kRowsPerBlock) matmul_kernel(const unsigned char* w, size_t row_bytes, int64_t rows,
                                                                     int64_t cols, const float* __restrict__ x,
                                                                     int64_t tokens, float* __restrict__ y) {
  const int lane = threadIdx.x & 31;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (r >= rows) return;
  const unsigned char* row = w + static_cast<size_t>(r) * row_bytes;
  for (int64_t t0 = 0; t0 < tokens; t0 += kTokensPerPass) {
    const int n = static_cast<int>(tokens - t0 < kTokensPerPass ? tokens - t0 : kTokensPerPass);
    float acc[kTokensPerPass] = {};
    for (int64_t j = lane; j < cols; j += 32) {
      const float wj = wval<K>(row, j);
#pragma unroll
      for (int i = 0; i < kTokensPerPass; ++i)
        if (i < n) acc[i] += wj * x[(t0 + i) * cols + j];
    }
#pragma unroll
    for (int i = 0; i < kTokensPerPass; ++i) {
      if (i >= n) break;
      const float s = warp_sum(acc[i]);
      if (lane == 0) y[(t0 + i) * rows + r] = s;
    }
  }
}

template <int K>
__global__ void dequantize_f16_kernel(const unsigned char* w, size_t row_bytes, int64_t cols, int64_t n, __half* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = __float2half(wval<K>(w + static_cast<size_t>(i / cols) * row_bytes, i % cols));
}

__global__ void to_f16_kernel(const float* x, int64_t n, __half* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = __float2half(x[i]);
}

// ---- norms and element-wise ------------------------------------------------

constexpr int kNormThreads = 256;

__global__ void rms_norm_kernel(const float* x, const void* w, int wkind, int64_t n, float eps, float* out) {
  __shared__ float partial[kNormThreads / 32];
  const float* xr = x + blockIdx.x * n;
  float* o = out + blockIdx.x * n;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += xr[i] * xr[i];
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
  __syncthreads();
  float total = 0.f;
  for (int i = 0; i < kNormThreads / 32; ++i) total += partial[i];
  const float scale = rsqrtf(total / static_cast<float>(n) + eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = xr[i] * scale * vval(wkind, w, i);
}

__global__ void add_bias_kernel(float* x, const void* b, int bkind, int64_t n, int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] += vval(bkind, b, i % n);
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

__global__ void swiglu_kernel(float* gate, const float* up, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    gate[i] = g / (1.f + expf(-g)) * up[i];
  }
}

dim3 grid_for(int64_t n) {
  const int64_t blocks = (n + 255) / 256;
  return dim3(static_cast<unsigned>(blocks < 65536 ? blocks : 65536));
}

// ---- KV cache ---------------------------------------------------------------

struct KvRow {
  unsigned char* k;
  unsigned char* v;
};

__device__ inline KvRow kv_row(const KvPass& p, int64_t t, int64_t position, int64_t layer, int64_t kv_dim, int elem) {
  unsigned char* block = static_cast<unsigned char*>(p.block_ptrs[p.table_start[t] + position / p.block_tokens]);
  const size_t row = static_cast<size_t>(kv_dim) * elem;
  unsigned char* k = block + static_cast<size_t>(layer) * p.layer_bytes + static_cast<size_t>(position % p.block_tokens) * row;
  return {k, k + static_cast<size_t>(p.block_tokens) * row};
}

__device__ inline void kv_store(unsigned char* row, int64_t i, float v, bool f16) {
  if (f16) reinterpret_cast<__half*>(row)[i] = __float2half(v);
  else reinterpret_cast<float*>(row)[i] = v;
}

__device__ inline float kv_load(const unsigned char* row, int64_t i, bool f16) {
  return f16 ? __half2float(reinterpret_cast<const __half*>(row)[i]) : reinterpret_cast<const float*>(row)[i];
}

// Grid (tokens, H + 2 Hkv), one warp each: q heads, then k heads, then v heads.
__global__ void rope_store_kernel(KvPass p, HeadShape s, int64_t layer, float* q, float* k, const float* v, WeightVector qn,
                                  int qn_kind, WeightVector kn, int kn_kind, float eps, const float* inv_freq, bool interleaved) {
  const int64_t t = blockIdx.x;
  const int h = blockIdx.y, lane = threadIdx.x, hd = s.head_dim, half = hd / 2;
  const int64_t kv_dim = static_cast<int64_t>(s.n_kv_heads) * hd;
  const int64_t pos = p.positions[t];
  const bool f16 = p.kv_dtype == DType::F16;
  const KvRow dst = kv_row(p, t, pos, layer, kv_dim, f16 ? 2 : 4);
  if (h >= s.n_heads + s.n_kv_heads) {  // a V head: stored as is
    const int kvh = h - s.n_heads - s.n_kv_heads;
    for (int i = lane; i < hd; i += 32) kv_store(dst.v, kvh * hd + i, v[t * kv_dim + kvh * hd + i], f16);
    return;
  }
  const bool is_q = h < s.n_heads;
  const int kvh = h - s.n_heads;
  float* x = is_q ? q + (t * s.n_heads + h) * hd : k + t * kv_dim + static_cast<int64_t>(kvh) * hd;
  const WeightVector& norm = is_q ? qn : kn;
  const int nkind = is_q ? qn_kind : kn_kind;
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
      xa *= vval(nkind, norm.data, a);
      xb *= vval(nkind, norm.data, b);
    }
    double sn, cs;
    sincos(static_cast<double>(pos) * inv_freq[i], &sn, &cs);
    const float c = static_cast<float>(cs), si = static_cast<float>(sn);
    const float ra = xa * c - xb * si, rb = xb * c + xa * si;
    x[a] = ra;
    x[b] = rb;
    if (!is_q) {
      kv_store(dst.k, kvh * hd + a, ra, f16);
      kv_store(dst.k, kvh * hd + b, rb, f16);
    }
  }
}

// ---- attention --------------------------------------------------------------

constexpr int kAttnWarps = 4;
constexpr int kMaxHeadDim = 256;

// Grid (tokens, H), kAttnWarps warps: warp w takes keys w, w + kAttnWarps, ...
// with its own online softmax; the warps' states merge at the end. Lane i
// holds elements i, i + 32, ... of q and of the output.
__global__ void __launch_bounds__(32 * kAttnWarps) attention_kernel(KvPass p, HeadShape s, int64_t layer, const float* q,
                                                                     float* out, int64_t keys_per_split, float* partial) {
  constexpr int kPer = kMaxHeadDim / 32;
  __shared__ float s_m[kAttnWarps], s_l[kAttnWarps];
  __shared__ float s_acc[kAttnWarps][kMaxHeadDim];
  const int64_t t = blockIdx.x;
  const int h = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, hd = s.head_dim;
  const int kvh = h / (s.n_heads / s.n_kv_heads);
  const int64_t kv_dim = static_cast<int64_t>(s.n_kv_heads) * hd;
  const int64_t pos = p.positions[t];
  const bool f16 = p.kv_dtype == DType::F16;
  const float scale = rsqrtf(static_cast<float>(hd));
  const float* qh = q + (t * s.n_heads + h) * hd;
  float qr[kPer], acc[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = lane + 32 * j;
    qr[j] = i < hd ? qh[i] * scale : 0.f;
    acc[j] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  const int64_t k0 = static_cast<int64_t>(blockIdx.z) * keys_per_split;
  const int64_t k1 = k0 + keys_per_split < pos + 1 ? k0 + keys_per_split : pos + 1;
  for (int64_t key = k0 + warp; key < k1; key += kAttnWarps) {
    const KvRow r = kv_row(p, t, key, layer, kv_dim, f16 ? 2 : 4);
    const unsigned char* kr = r.k + static_cast<size_t>(kvh) * hd * (f16 ? 2 : 4);
    const unsigned char* vr = r.v + static_cast<size_t>(kvh) * hd * (f16 ? 2 : 4);
    float dot = 0.f;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int i = lane + 32 * j;
      if (i < hd) dot += qr[j] * kv_load(kr, i, f16);
    }
    dot = warp_sum(dot);
    const float m_new = fmaxf(m, dot), corr = __expf(m - m_new), e = __expf(dot - m_new);
    l = l * corr + e;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int i = lane + 32 * j;
      if (i < hd) acc[j] = acc[j] * corr + e * kv_load(vr, i, f16);
    }
    m = m_new;
  }
  if (lane == 0) {
    s_m[warp] = m;
    s_l[warp] = l;
  }
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int i = lane + 32 * j;
    if (i < hd) s_acc[warp][i] = acc[j];
  }
  __syncthreads();
  float M = -INFINITY;
  for (int w = 0; w < kAttnWarps; ++w) M = fmaxf(M, s_m[w]);
  float L = 0.f, weight[kAttnWarps];
  for (int w = 0; w < kAttnWarps; ++w) {
    weight[w] = s_l[w] > 0.f ? __expf(s_m[w] - M) : 0.f;
    L += s_l[w] * weight[w];
  }
  if (!partial) {  // one split: the final output
    float* o = out + (t * s.n_heads + h) * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
      float v = 0.f;
      for (int w = 0; w < kAttnWarps; ++w) v += s_acc[w][i] * weight[w];
      o[i] = v / L;
    }
    return;
  }
  // Several splits: this one's max, denominator and unnormalised sum.
  float* rec = partial + ((t * s.n_heads + h) * gridDim.z + blockIdx.z) * (hd + 2);
  if (threadIdx.x == 0) {
    rec[0] = M;
    rec[1] = L;
  }
  for (int i = threadIdx.x; i < hd; i += blockDim.x) {
    float v = 0.f;
    for (int w = 0; w < kAttnWarps; ++w) v += s_acc[w][i] * weight[w];
    rec[2 + i] = v;
  }
}

// Merges the splits of each (token, head): flash-decoding's second step.
__global__ void attention_merge_kernel(const float* partial, int splits, int n_heads, int hd, float* out) {
  const int64_t t = blockIdx.x;
  const int h = blockIdx.y;
  const float* recs = partial + (t * n_heads + h) * static_cast<int64_t>(splits) * (hd + 2);
  float M = -INFINITY;
  for (int i = 0; i < splits; ++i)
    if (recs[i * (hd + 2) + 1] > 0.f) M = fmaxf(M, recs[i * (hd + 2)]);
  float L = 0.f;
  for (int i = 0; i < splits; ++i) {
    const float* r = recs + i * (hd + 2);
    if (r[1] > 0.f) L += r[1] * __expf(r[0] - M);
  }
  float* o = out + (t * n_heads + h) * hd;
  for (int j = threadIdx.x; j < hd; j += blockDim.x) {
    float v = 0.f;
    for (int i = 0; i < splits; ++i) {
      const float* r = recs + i * (hd + 2);
      if (r[1] > 0.f) v += r[2 + j] * __expf(r[0] - M);
    }
    o[j] = v / L;
  }
}

void check(bool ok, const std::string& what) {
  if (!ok) throw Error("cuda " + what);
}

}  // namespace

bool ops_support_matrix(DType t) { return kind_of(t) >= 0; }
bool ops_support_vector(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }
bool ops_support_kv(DType t) { return t == DType::F32 || t == DType::F16; }

cudaError_t embed(const WeightMatrix& table, const int32_t* ids, int64_t tokens, float* x, cudaStream_t stream) {
  check(ops_support_matrix(table.dtype), "embed: unsupported table type " + std::string(to_string(table.dtype)));
  check(table.data && ids && x && tokens > 0 && tokens < (int64_t{1} << 31) && table.cols > 0, "embed: bad arguments");
  check(dtype_info(table.dtype).block_elems == 1 || table.cols % 32 == 0, "embed: columns not in whole blocks");
  const auto* data = static_cast<const unsigned char*>(table.data);
  const size_t rb = row_bytes(table.dtype, table.cols);
  const dim3 grid(static_cast<unsigned>(tokens)), block(256);
  switch (kind_of(table.dtype)) {
    case kF32: embed_kernel<kF32><<<grid, block, 0, stream>>>(data, rb, table.cols, ids, x); break;
    case kF16: embed_kernel<kF16><<<grid, block, 0, stream>>>(data, rb, table.cols, ids, x); break;
    case kBF16: embed_kernel<kBF16><<<grid, block, 0, stream>>>(data, rb, table.cols, ids, x); break;
    case kQ8: embed_kernel<kQ8><<<grid, block, 0, stream>>>(data, rb, table.cols, ids, x); break;
    default: embed_kernel<kQ4><<<grid, block, 0, stream>>>(data, rb, table.cols, ids, x); break;
  }
  return cudaGetLastError();
}

cudaError_t matmul_generic(const WeightMatrix& w, const float* x, int64_t tokens, float* y, cudaStream_t stream) {
  check(ops_support_matrix(w.dtype), "matmul: unsupported weight type " + std::string(to_string(w.dtype)));
  check(w.data && x && y && tokens > 0 && w.rows > 0 && w.cols > 0, "matmul: bad arguments");
  check(dtype_info(w.dtype).block_elems == 1 || w.cols % 32 == 0, "matmul: columns not in whole blocks");
  check(w.rows < (int64_t{1} << 31) * kRowsPerBlock, "matmul: too many rows");
  const auto* data = static_cast<const unsigned char*>(w.data);
  const size_t rb = row_bytes(w.dtype, w.cols);
  const dim3 grid(static_cast<unsigned>((w.rows + kRowsPerBlock - 1) / kRowsPerBlock)), block(32 * kRowsPerBlock);
  switch (kind_of(w.dtype)) {
    case kF32: matmul_kernel<kF32><<<grid, block, 0, stream>>>(data, rb, w.rows, w.cols, x, tokens, y); break;
    case kF16: matmul_kernel<kF16><<<grid, block, 0, stream>>>(data, rb, w.rows, w.cols, x, tokens, y); break;
    case kBF16: matmul_kernel<kBF16><<<grid, block, 0, stream>>>(data, rb, w.rows, w.cols, x, tokens, y); break;
    case kQ8: matmul_kernel<kQ8><<<grid, block, 0, stream>>>(data, rb, w.rows, w.cols, x, tokens, y); break;
    default: matmul_kernel<kQ4><<<grid, block, 0, stream>>>(data, rb, w.rows, w.cols, x, tokens, y); break;
  }
  return cudaGetLastError();
}

cudaError_t dequantize_f16(const WeightMatrix& w, int64_t row0, int64_t rows, void* out, cudaStream_t stream) {
  check(ops_support_matrix(w.dtype) && w.data && out && row0 >= 0 && rows > 0 && row0 + rows <= w.rows && w.cols > 0,
        "dequantize_f16: bad arguments");
  check(dtype_info(w.dtype).block_elems == 1 || w.cols % 32 == 0, "dequantize_f16: columns not in whole blocks");
  const size_t rb = row_bytes(w.dtype, w.cols);
  const auto* data = static_cast<const unsigned char*>(w.data) + static_cast<size_t>(row0) * rb;
  const int64_t n = rows * w.cols;
  auto* o = static_cast<__half*>(out);
  switch (kind_of(w.dtype)) {
    case kF32: dequantize_f16_kernel<kF32><<<grid_for(n), 256, 0, stream>>>(data, rb, w.cols, n, o); break;
    case kF16: dequantize_f16_kernel<kF16><<<grid_for(n), 256, 0, stream>>>(data, rb, w.cols, n, o); break;
    case kBF16: dequantize_f16_kernel<kBF16><<<grid_for(n), 256, 0, stream>>>(data, rb, w.cols, n, o); break;
    case kQ8: dequantize_f16_kernel<kQ8><<<grid_for(n), 256, 0, stream>>>(data, rb, w.cols, n, o); break;
    default: dequantize_f16_kernel<kQ4><<<grid_for(n), 256, 0, stream>>>(data, rb, w.cols, n, o); break;
  }
  return cudaGetLastError();
}

cudaError_t to_f16(const float* x, int64_t n, void* out, cudaStream_t stream) {
  check(x && out && n > 0, "to_f16: bad arguments");
  to_f16_kernel<<<grid_for(n), 256, 0, stream>>>(x, n, static_cast<__half*>(out));
  return cudaGetLastError();
}

cudaError_t rms_norm(const float* x, const WeightVector& w, int64_t rows, float eps, float* out, cudaStream_t stream) {
  check(ops_support_vector(w.dtype) && w.data && x && out && rows > 0 && w.size > 0 && rows < (int64_t{1} << 31),
        "rms_norm: bad arguments");
  rms_norm_kernel<<<static_cast<unsigned>(rows), kNormThreads, 0, stream>>>(x, w.data, kind_of(w.dtype), w.size, eps, out);
  return cudaGetLastError();
}

cudaError_t add_bias(float* x, const WeightVector& b, int64_t rows, cudaStream_t stream) {
  check(ops_support_vector(b.dtype) && b.data && x && rows > 0 && b.size > 0, "add_bias: bad arguments");
  add_bias_kernel<<<grid_for(rows * b.size), 256, 0, stream>>>(x, b.data, kind_of(b.dtype), b.size, rows * b.size);
  return cudaGetLastError();
}

cudaError_t add(float* x, const float* y, int64_t n, cudaStream_t stream) {
  check(x && y && n > 0, "add: bad arguments");
  add_kernel<<<grid_for(n), 256, 0, stream>>>(x, y, n);
  return cudaGetLastError();
}

cudaError_t swiglu(float* gate, const float* up, int64_t n, cudaStream_t stream) {
  check(gate && up && n > 0, "swiglu: bad arguments");
  swiglu_kernel<<<grid_for(n), 256, 0, stream>>>(gate, up, n);
  return cudaGetLastError();
}

namespace {
void check_pass(const KvPass& p, const HeadShape& s, const char* op) {
  const std::string name(op);
  check(p.positions && p.table_start && p.block_ptrs && p.tokens > 0 && p.tokens < 65536 * 32768LL && p.block_tokens > 0,
        name + ": bad KV pass");
  check(ops_support_kv(p.kv_dtype), name + ": KV cache type " + std::string(to_string(p.kv_dtype)) + " is not supported on CUDA");
  check(s.n_heads > 0 && s.n_kv_heads > 0 && s.n_heads % s.n_kv_heads == 0 && s.head_dim > 0 && s.head_dim % 2 == 0 &&
            s.head_dim <= kMaxHeadDim,
        name + ": bad head shape");
}
}  // namespace

cudaError_t rope_store_kv(const KvPass& pass, const HeadShape& shape, int64_t layer, float* q, float* k, const float* v,
                          const WeightVector& q_norm, const WeightVector& k_norm, float eps, const float* inv_freq,
                          bool interleaved, cudaStream_t stream) {
  check_pass(pass, shape, "rope_store_kv");
  check(q && k && v && inv_freq && layer >= 0, "rope_store_kv: null operand");
  check((!q_norm.data || (ops_support_vector(q_norm.dtype) && q_norm.size == shape.head_dim)) &&
            (!k_norm.data || (ops_support_vector(k_norm.dtype) && k_norm.size == shape.head_dim)),
        "rope_store_kv: q/k norm must have head_dim elements");
  const dim3 grid(static_cast<unsigned>(pass.tokens), static_cast<unsigned>(shape.n_heads + 2 * shape.n_kv_heads));
  rope_store_kernel<<<grid, 32, 0, stream>>>(pass, shape, layer, q, k, v, q_norm, kind_of(q_norm.dtype), k_norm,
                                             kind_of(k_norm.dtype), eps, inv_freq, interleaved);
  return cudaGetLastError();
}

size_t attention_partial_floats(int64_t tokens, int n_heads, int head_dim, int64_t splits) {
  return static_cast<size_t>(tokens) * static_cast<size_t>(n_heads) * static_cast<size_t>(splits) * static_cast<size_t>(head_dim + 2);
}

cudaError_t attention(const KvPass& pass, const HeadShape& shape, int64_t layer, const float* q, float* out,
                      int64_t max_position, float* partial, size_t partial_floats, cudaStream_t stream) {
  check_pass(pass, shape, "attention");
  check(q && out && layer >= 0 && max_position >= 0, "attention: bad operand");
  // Enough (token, head, split) blocks to fill the GPU, splits of at least
  // 256 keys, no more than the partials buffer holds.
  const int64_t blocks = pass.tokens * shape.n_heads;
  int64_t splits = std::min<int64_t>((max_position + 256) / 256, std::max<int64_t>(1, 1024 / blocks));
  while (splits > 1 && (!partial || attention_partial_floats(pass.tokens, shape.n_heads, shape.head_dim, splits) > partial_floats))
    --splits;
  splits = std::max<int64_t>(1, std::min<int64_t>(splits, 65535));
  const int64_t per_split = (max_position + splits) / splits;  // ceil((max_position + 1) / splits)
  const dim3 grid(static_cast<unsigned>(pass.tokens), static_cast<unsigned>(shape.n_heads), static_cast<unsigned>(splits));
  attention_kernel<<<grid, 32 * kAttnWarps, 0, stream>>>(pass, shape, layer, q, out, per_split, splits > 1 ? partial : nullptr);
  if (splits > 1) {
    const dim3 merge_grid(static_cast<unsigned>(pass.tokens), static_cast<unsigned>(shape.n_heads));
    attention_merge_kernel<<<merge_grid, 128, 0, stream>>>(partial, static_cast<int>(splits), shape.n_heads, shape.head_dim, out);
  }
  return cudaGetLastError();
}

}  // namespace umi::cuda
