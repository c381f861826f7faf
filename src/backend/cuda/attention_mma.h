// Attention for prefill chunks on the f16 tensor cores (internal to
// attention.cu, which checks the pass and picks this kernel or the CUDA-core
// ones).
//
// A thread block takes 64 (token, q head) rows that read the same keys: the
// q heads of a KV head group (`hpc` of them) times 64 / hpc consecutive
// tokens of one sequence (the pass's groups), four warps of 16 rows. Keys
// come in tiles of 64 from the paged f16 cache into shared memory
// (cp.async, the next tile's copy in flight while this one is used);
// S = Q K^T and O += P V are mma.sync m16n8k16 with f32 sums, the online
// softmax runs on the score fragments in registers, and P goes from the
// score fragments to the next product's operand without leaving them (flash
// attention 2's arrangement). Q is rounded to f16 (scaled by
// log2(e) / sqrt(head_dim) first) and so is P: the same rounding as the
// f16 KV cache, ~1e-3 relative.
//
// The CUDA-core kernel it replaces for prefill ran at ~7 TFLOP/s: a
// 512-token BF16 prefill of the 8B shape spent 10.2 of its 28.5 ms there
// (session 10's trace).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/kv_pass.cuh"
#include "backend/cuda/ops.h"

namespace umi::cuda {

// Whether the tensor-core kernel takes passes of this head shape and KV type
// (f16 or q8_0 KV, the latter dequantized to f16 on its way into shared
// memory; head_dim 32, 64 or 128).
bool mma_attention_supports(const HeadShape& s, DType kv_dtype);

// Tokens per group it takes: 64 rows / the q heads a block takes.
int mma_attention_tokens_per_group(int heads_per_block);

// attention() (ops.h) for a pass whose groups have at most
// mma_attention_tokens_per_group(job.hpc) tokens, in one split (the job's
// split fields are not read); the caller has checked the pass and operands.
void mma_attention(const AttentionJob& job, cudaStream_t stream);

}  // namespace umi::cuda
