// The memory a model needs before anything is loaded: weights, KV cache for a
// set of requests, and the activation scratch of one prefill chunk. Buffer
// sizes are the ones the forward pass allocates and are rounded the way the
// pool accounts them, so the plan predicts the pool's counters rather than
// approximating them.
#pragma once

#include <cstdint>

#include "format/dtype.h"
#include "model/config.h"

namespace umi {

// The scratch buffers of one forward pass over a chunk of `tokens` tokens
// (f32 unless noted). The CPU forward pass sizes its buffers from this.
struct ActivationLayout {
  uint64_t residual;    // x: [tokens, hidden]
  uint64_t normed;      // xn: [tokens, hidden]
  uint64_t q;           // [tokens, n_heads * head_dim]
  uint64_t k;           // [tokens, n_kv_heads * head_dim]
  uint64_t v;           // [tokens, n_kv_heads * head_dim]
  uint64_t attn_out;    // [tokens, n_heads * head_dim]
  uint64_t gate;        // [tokens, intermediate]
  uint64_t up;          // [tokens, intermediate]
  uint64_t quantized;   // activations quantized to q8 for integer dot products: [tokens, widest row], 40 B per 32
  uint64_t gemm_pack;   // one packed 8-row weight tile per thread for the tiled GEMM: [threads, widest row / 32, 352 B]
  uint64_t logits;      // [logit_rows, vocab]: the last position of each sequence in the pass
  uint64_t attn_scratch;  // attention_scratch(): per thread a KV block in f32 and softmax state, and partial outputs

  uint64_t total(uint64_t page) const;  // each buffer rounded as the pool accounts it
};
ActivationLayout activation_layout(const ModelConfig& c, int64_t tokens, int64_t threads, int64_t kv_block_tokens,
                                   int64_t logit_rows = 1);

// The CPU attention's scratch, in floats: one slot per thread, the larger of
// what its two ways need (by KV head, for runs of several tokens: one KV
// block of one head in f32, a query group's scores, the running max and
// denominator of every query row of the pass that shares the head; by
// positions, for single-token runs: a max and a denominator per query head),
// then the partial outputs of single-token runs split across threads (at
// most 2 x threads parts, each an output row, a max and a denominator per
// query head).
struct AttentionScratch {
  uint64_t per_thread = 0, partials = 0;
  uint64_t total_floats(int64_t threads) const { return per_thread * static_cast<uint64_t>(threads) + partials; }
};
AttentionScratch attention_scratch(const ModelConfig& c, int64_t tokens, int64_t threads, int64_t kv_block_tokens);

// Bytes of K and V for one token across all layers.
uint64_t kv_bytes_per_token(const ModelConfig& c, DType kv_dtype);

// Weight bytes for a model whose files are not at hand: every matrix in
// `dtype`; norms and biases in f32 when `dtype` is quantized (as GGUF stores
// them), else in `dtype`.
uint64_t estimate_weight_bytes(const ModelConfig& c, DType dtype);

struct FitRequest {
  int64_t context = 0;  // tokens per sequence (prompt + generated)
  int64_t batch = 1;    // concurrent sequences
  DType kv_dtype = DType::F16;
  int64_t prefill_chunk = 512;
  int64_t kv_block_tokens = 16;
  int64_t threads = 1;
  uint64_t limit = 0;
  uint64_t page = 4096;
};

struct MemoryPlan {
  uint64_t weights = 0;
  uint64_t kv_per_token = 0;
  uint64_t kv_block = 0;     // bytes of one KV block as accounted
  uint64_t kv_total = 0;     // for batch x context, in whole blocks
  uint64_t activations = 0;  // one prefill chunk
  uint64_t total = 0;
  uint64_t limit = 0;
  bool fits = false;
  int64_t max_context = 0;  // largest context per sequence that fits at this batch (0: none)
  int64_t model_context = 0;
};

MemoryPlan plan_memory(const ModelConfig& c, uint64_t weight_bytes, const FitRequest& r);

}  // namespace umi
