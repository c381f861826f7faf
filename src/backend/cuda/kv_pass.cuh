// Device-side helpers over a KvPass (ops.h): where a token's K and V rows
// live in the paged cache, one attention launch's arguments, and the
// launchers' shared argument check.
#pragma once

#include <cuda_fp16.h>

#include <string>

#include "backend/cuda/ops.h"
#include "core/error.h"

namespace umi::cuda {

constexpr int kMaxHeadDim = 256;

// One attention launch's arguments, passed down the launchers whole (the
// CUDA-core kernels of attention.cu and the tensor-core one of
// attention_mma.cu).
struct AttentionJob {
  KvPass p;
  HeadShape s;
  int hpc = 1;  // q heads a block takes
  int64_t layer = 0;
  const float* q = nullptr;
  float* out = nullptr;
  Q8Rows q8;  // q8.q null: out alone
  int64_t min_split_keys = 0;  // the CUDA-core kernels' splits (the tensor-core one takes one)
  float* partial = nullptr;  // null: one split, no merge
};

struct KvRow {
  unsigned char* k;
  unsigned char* v;
};

// A Q8_0 KV block: 32 values as an f16 d, then 32 int8.
constexpr int kQ8KvBlockBytes = 34;

// Bytes of n values of a K (or V) row: f16, f32, or Q8_0 blocks (n a
// multiple of 32; whole blocks per head, the launchers check head_dim % 32).
// Of kv_dim values, one token's row; of kvh x head_dim, where head kvh starts.
__host__ __device__ inline int64_t kv_row_bytes(DType t, int64_t n) {
  return t == DType::F16 ? 2 * n : t == DType::Q8_0 ? n / 32 * kQ8KvBlockBytes : 4 * n;
}

// Value i of a row of Q8_0 blocks at `row`: its block's d, and a pointer to
// its int8 (from an even i, pairs are 2-byte aligned: the widest aligned load).
__device__ inline float q8_kv_scale(const unsigned char* row, int i) {
  return __half2float(*reinterpret_cast<const __half*>(row + i / 32 * kQ8KvBlockBytes));
}
__device__ inline const signed char* q8_kv_values(const unsigned char* row, int i) {
  return reinterpret_cast<const signed char*>(row + i / 32 * kQ8KvBlockBytes + 2 + i % 32);
}

// Row `position` of the sequence of pass token t, at `layer` (row_bytes:
// kv_row_bytes of the pass's type).
// Positions and block sizes fit 32 bits (the launchers check the token
// count; contexts are far below 2^31): 32-bit division is several times
// cheaper than 64-bit on the GPU.
// Where the pointer to the KV block holding that row is (in the pass's
// tables, which no kernel writes: kernels may prefetch it before their wait).
__device__ inline void* const* kv_block_slot(const KvPass& p, int64_t t, int64_t position) {
  return p.block_ptrs + p.table_start[t] + static_cast<unsigned>(position) / static_cast<unsigned>(p.block_tokens);
}

// The L1 prefetch of that pointer (a table: kernels issue it before their wait).
__device__ inline void prefetch_block_slot(const KvPass& p, int64_t t, int64_t position) {
  asm volatile("prefetch.global.L1 [%0];" ::"l"(kv_block_slot(p, t, position)));
}

__device__ inline KvRow kv_row(const KvPass& p, int64_t t, int64_t position, int64_t layer, int64_t row_bytes) {
  const unsigned pos = static_cast<unsigned>(position), bt = static_cast<unsigned>(p.block_tokens);
  unsigned char* block = static_cast<unsigned char*>(*kv_block_slot(p, t, position));
  const size_t row = static_cast<size_t>(row_bytes);
  unsigned char* k = block + static_cast<size_t>(layer) * p.layer_bytes + static_cast<size_t>(pos % bt) * row;
  return {k, k + static_cast<size_t>(p.block_tokens) * row};
}

inline void check_kv_pass(const KvPass& p, const HeadShape& s, const char* op) {
  const std::string name(op);
  if (!(p.positions && p.table_start && p.block_ptrs && p.tokens > 0 && p.tokens < (int64_t{1} << 24) && p.block_tokens > 0 &&
        p.block_tokens < (int64_t{1} << 20)))
    throw Error("cuda " + name + ": bad KV pass");
  if (!ops_support_kv(p.kv_dtype))
    throw Error("cuda " + name + ": KV cache type " + std::string(to_string(p.kv_dtype)) + " is not supported on CUDA");
  if (!(s.n_heads > 0 && s.n_kv_heads > 0 && s.n_heads % s.n_kv_heads == 0 && s.head_dim > 0 && s.head_dim % 8 == 0 &&
        s.head_dim <= kMaxHeadDim && (p.kv_dtype != DType::Q8_0 || s.head_dim % 32 == 0)))
    throw Error("cuda " + name + ": head shape " + std::to_string(s.n_heads) + "/" + std::to_string(s.n_kv_heads) + " x " +
                std::to_string(s.head_dim) + " is not supported (head_dim a multiple of 8, of 32 for a q8_0 KV cache, at most 256)");
}

}  // namespace umi::cuda
