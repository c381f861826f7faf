#include "backend/cuda/top_k.h"

#include <string>

#include "core/error.h"

namespace umi::cuda {

namespace {

constexpr int kSliceKeys = 4096, kSelectThreads = 512;

// -0 and +0 are equal values (ranked by id, as on the host): one key for both.
__device__ inline uint64_t make_key(float v, int64_t id) {
  const unsigned bits = __float_as_uint(v == 0.f ? 0.f : v), ordered = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<uint64_t>(ordered) << 32) | (0xFFFFFFFFu - static_cast<unsigned>(id));
}

// Block (slice s, row r): keys of its 4096 inputs (from logits in the first
// round, keys after), sorted descending in shared memory, its best k out.
template <bool FromLogits>
__global__ void __launch_bounds__(kSelectThreads)
    top_k_select_kernel(const void* in, int64_t n, const float* __restrict__ temperatures, int k, uint64_t* __restrict__ out) {
  __shared__ uint64_t key[kSliceKeys];
  const int64_t row = blockIdx.y, start = static_cast<int64_t>(blockIdx.x) * kSliceKeys;
  const float t = FromLogits ? temperatures[row] : 1.f;
  for (int i = threadIdx.x; i < kSliceKeys; i += kSelectThreads) {
    const int64_t j = start + i;
    uint64_t v = 0;
    if (j < n) {
      if constexpr (FromLogits) {
        const float l = static_cast<const float*>(in)[row * n + j];
        if (isfinite(l)) v = make_key(l / t, j);  // IEEE division, as the host's
      } else {
        v = static_cast<const uint64_t*>(in)[row * n + j];
      }
    }
    key[i] = v;
  }
  __syncthreads();
  // Bitonic sort, descending: pairs (i, i + stride) with bit `stride` of i
  // clear; runs of `size` alternate direction until the last, one run.
  for (int size = 2; size <= kSliceKeys; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int p = threadIdx.x; p < kSliceKeys / 2; p += kSelectThreads) {
        const int i = 2 * p - (p & (stride - 1)), j = i + stride;
        const uint64_t a = key[i], b = key[j];
        const bool descending = (i & size) == 0;
        if ((a < b) == descending) {
          key[i] = b;
          key[j] = a;
        }
      }
      __syncthreads();
    }
  }
  for (int i = threadIdx.x; i < k; i += kSelectThreads) out[(row * gridDim.x + blockIdx.x) * k + i] = key[i];
}

int64_t slices_of(int64_t n) { return (n + kSliceKeys - 1) / kSliceKeys; }

}  // namespace

size_t top_k_scratch_bytes(int64_t rows, int64_t n, int k) {
  // Two buffers of the first round's survivors (later rounds have fewer).
  const int64_t s = slices_of(n);
  return s > 1 ? static_cast<size_t>(2 * rows * s * k) * sizeof(uint64_t) : 0;
}

cudaError_t top_k_rows(const float* x, int64_t rows, int64_t n, const float* temperatures, int k, uint64_t* keys,
                       void* scratch, size_t scratch_bytes, cudaStream_t stream) {
  if (!x || !temperatures || !keys || rows <= 0 || rows >= 65536 || n <= 0 || n >= (int64_t{1} << 31) || k < 1 || k > kTopKMax)
    throw Error("cuda top_k_rows: bad arguments (" + std::to_string(rows) + " rows of " + std::to_string(n) + ", k " +
                std::to_string(k) + ")");
  if (scratch_bytes < top_k_scratch_bytes(rows, n, k) || (scratch_bytes > 0 && (!scratch || reinterpret_cast<uintptr_t>(scratch) % 8 != 0)))
    throw Error("cuda top_k_rows: scratch smaller than top_k_scratch_bytes or misaligned");
  int64_t slices = slices_of(n);
  auto* buf = static_cast<uint64_t*>(scratch);
  uint64_t* ping = buf;
  uint64_t* pong = buf ? buf + rows * slices * k : nullptr;
  uint64_t* dst = slices == 1 ? keys : ping;
  top_k_select_kernel<true><<<dim3(static_cast<unsigned>(slices), static_cast<unsigned>(rows)), kSelectThreads, 0, stream>>>(
      x, n, temperatures, k, dst);
  // Each round keeps k of every 4096 (k <= 512): at least 8 times fewer.
  while (slices > 1) {
    const int64_t m = slices * k;
    slices = slices_of(m);
    uint64_t* next = slices == 1 ? keys : (dst == ping ? pong : ping);
    top_k_select_kernel<false><<<dim3(static_cast<unsigned>(slices), static_cast<unsigned>(rows)), kSelectThreads, 0, stream>>>(
        dst, m, temperatures, k, next);
    dst = next;
  }
  return cudaGetLastError();
}

}  // namespace umi::cuda
