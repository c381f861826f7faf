// The CUDA backend's kernels other than the quantized matvec: each launcher
// checks its arguments (throws umi::Error naming the problem), enqueues on
// `stream` and returns the launch's error code. All pointers are device
// pointers unless named host_. C++17 (nvcc), no C++20 headers.
//
// Weight operands are in their file dtype: matrices f32, f16, bf16, q8_0,
// q4_0, q4_k, q5_k or q6_k (as quant_layout.h lays them out on the device);
// vectors f32, f16 or bf16. Activations are f32. KV cache rows are f16, f32 or q8_0 (kv_dtype).
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "backend/cuda/q8_rows.h"
#include "format/dtype.h"

namespace umi::cuda {

struct WeightMatrix {
  DType dtype = DType::F32;
  const void* data = nullptr;
  int64_t rows = 0, cols = 0;
};

struct WeightVector {
  DType dtype = DType::F32;
  const void* data = nullptr;  // nullptr: absent
  int64_t size = 0;
};

bool ops_support_matrix(DType t);
bool ops_support_vector(DType t);
bool ops_support_kv(DType t);

// x[t] = row ids[t] of `table` as floats, t < tokens.                 [tokens, table.cols]
cudaError_t embed(const WeightMatrix& table, const int32_t* ids, int64_t tokens, float* x, cudaStream_t stream);

// y[t] = w x[t] for t < tokens: any matrix dtype, any token count (weights
// re-read per token from cache; the batch-1 quantized case has its own
// faster kernel in quant_matvec.h).                                    [tokens, w.rows]
cudaError_t matmul_generic(const WeightMatrix& w, const float* x, int64_t tokens, float* y, cudaStream_t stream);

// Rows [row0, row0 + rows) of w as f16, [rows, w.cols] (for tensor-core
// GEMMs; cols a multiple of 32, 16-byte aligned), and n floats as f16 or
// bf16 (`type`).
cudaError_t dequantize_f16(const WeightMatrix& w, int64_t row0, int64_t rows, void* out, cudaStream_t stream);
cudaError_t to_half(const float* x, int64_t n, DType type, void* out, cudaStream_t stream);

// out[r] = x[r] / rms(x[r]) * w, rows of w.size floats (out may be x). With
// q8 (optional), out is also written quantized for the integer matvec.
cudaError_t rms_norm(const float* x, const WeightVector& w, int64_t rows, float eps, float* out, const Q8Rows* q8,
                     cudaStream_t stream);

// x[r] += b, rows of b.size floats.
cudaError_t add_bias(float* x, const WeightVector& b, int64_t rows, cudaStream_t stream);

// x[i] += y[i]; gate[i] = silu(gate[i]) * up[i] (and into q8, optional).
cudaError_t add(float* x, const float* y, int64_t n, cudaStream_t stream);
cudaError_t swiglu(float* gate, const float* up, int64_t n, const Q8Rows* q8, cudaStream_t stream);

// ids[r] = index of the largest of row r's n floats, the first of equal
// ones (as std::max_element); NaN never wins.                      [rows]
// Two launches: slices' bests into `scratch` (argmax_scratch_bytes(rows,
// n) bytes, 4-byte aligned), then one pick per row. rows < 65536.
size_t argmax_scratch_bytes(int64_t rows, int64_t n);
cudaError_t argmax_rows(const float* x, int64_t rows, int64_t n, int32_t* ids, void* scratch, size_t scratch_bytes,
                        cudaStream_t stream);

// Where the tokens of a pass live in the paged KV cache. For token t: its
// position, and its sequence's block table as a slice of `block_ptrs`
// starting at table_start[t] (one device pointer per block of block_tokens
// positions). A block holds, per layer, K [block_tokens, kv_dim] then V.
// Attention takes the tokens in groups of consecutive tokens of one
// sequence (at most tokens_per_group): groups[g] = first token | count << 24.
struct KvPass {
  const int64_t* positions = nullptr;    // [tokens]
  const int32_t* table_start = nullptr;  // [tokens]
  void* const* block_ptrs = nullptr;     // [blocks of all sequences in the pass]
  const int32_t* groups = nullptr;       // [n_groups]
  int64_t tokens = 0, n_groups = 0;
  int64_t block_tokens = 16;
  size_t layer_bytes = 0;  // 2 * block_tokens * kv_dim * element size
  DType kv_dtype = DType::F16;
};

struct HeadShape {
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
};

// Per token: optional RMSNorm of each q and k head (q_norm/k_norm data may be
// null), RoPE at its position (inv_freq [head_dim/2]; pairs (i, i+hd/2), or
// (2i, 2i+1) when interleaved), then K and V into the KV cache at `layer`.
cudaError_t rope_store_kv(const KvPass& pass, const HeadShape& shape, int64_t layer, float* q, float* k, const float* v,
                          const WeightVector& q_norm, const WeightVector& k_norm, float eps, const float* inv_freq,
                          bool interleaved, cudaStream_t stream);

// Where the splits of a context keep their partial softmax states (floats
// floats; the split count shrinks to fit, down to 1 which needs none), and
// the fewest keys a split takes (0: the tuned default; the attention
// benchmark varies it).
struct AttentionSplits {
  float* partial = nullptr;
  size_t floats = 0;
  int64_t min_keys = 0;
};

// out = softmax(q K^T / sqrt(hd)) V per token and head over positions
// 0..its own of its sequence (online softmax; no score matrix in memory).
// One thread block takes a group of tokens (pass.groups) and the q heads
// that share a KV head (up to 16 (token, head) rows on the CUDA cores, 64 on
// the tensor cores: passes with multi-token groups, f16 KV, head_dim 32, 64
// or 128, in f16 with f32 sums), so each K and V row it
// reads serves all of them. When a pass has few blocks (decode), each
// group's keys are split across blocks (flash-decoding) and a second kernel
// merges the splits; at short contexts (head_dim 128, f16 KV) a decode
// block takes a warp per q head instead. max_position: the
// largest position in the pass. head_dim: a multiple of 8, at most 256.
// q8 (optional; head_dim a multiple of 32): out is also written quantized,
// for the integer product that reads it next.
cudaError_t attention(const KvPass& pass, const HeadShape& shape, int64_t layer, const float* q, float* out, const Q8Rows* q8,
                      int64_t max_position, const AttentionSplits& splits, cudaStream_t stream);
// How many tokens one attention block takes together (the group size the
// pass's groups must not exceed), for a head shape and KV type: a block's
// rows of (token, q head), 64 on the tensor cores (attention_mma.h), 16
// (head_dim <= 128) or 8 on the CUDA cores, over the q heads it takes.
int attention_tokens_per_group(const HeadShape& shape, DType kv_dtype);

}  // namespace umi::cuda
