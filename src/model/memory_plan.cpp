#include "model/memory_plan.h"

#include <algorithm>

#include "backend/cpu/gemm.h"
#include "backend/cpu/kernels.h"
#include "core/error.h"
#include "memory/pool.h"

namespace umi {

namespace {
uint64_t u(int64_t v) { return static_cast<uint64_t>(v); }

// Activations quantized for integer dot products: 32 int8, a float scale and
// a float sum per block (cpu::Q8Block).
uint64_t q8_row_bytes(int64_t width) { return (u(width) + 31) / 32 * 40; }

// One 64-byte-aligned tile per thread, and the alignment slack.
uint64_t gemm_pack_scratch_bytes(int64_t width, int64_t threads) {
  return (cpu::gemm_pack_bytes(width) + 63) / 64 * 64 * u(threads) + 64;
}
}  // namespace

uint64_t ActivationLayout::total(uint64_t page) const {
  uint64_t sum = 0;
  for (uint64_t b : {residual, normed, q, k, v, attn_out, gate, up, quantized, gemm_pack, logits, attn_scratch})
    sum += pool_bucket_size(b, page);
  return sum;
}

ActivationLayout activation_layout(const ModelConfig& c, int64_t tokens, int64_t threads, int64_t kv_block_tokens,
                                   int64_t logit_rows) {
  const uint64_t t = u(tokens), f = sizeof(float);
  ActivationLayout a{};
  a.residual = t * u(c.hidden_size) * f;
  a.normed = a.residual;
  a.q = t * u(c.q_dim()) * f;
  a.k = t * u(c.kv_dim()) * f;
  a.v = a.k;
  a.attn_out = a.q;
  a.gate = t * u(c.intermediate_size) * f;
  a.up = a.gate;
  int64_t widest = std::max({c.hidden_size, c.intermediate_size, c.q_dim()});
  a.quantized = t * q8_row_bytes(widest);
  // Only quantized weights use it, and only with several tokens: a planning
  // bound that does not look at the weight types.
  a.gemm_pack = tokens >= cpu::kGemmMinTokens ? gemm_pack_scratch_bytes(widest, threads) : 0;
  a.logits = u(logit_rows) * u(c.vocab_size) * f;
  a.attn_scratch = attention_scratch(c, tokens, threads, kv_block_tokens).total_floats(threads) * f;
  return a;
}

AttentionScratch attention_scratch(const ModelConfig& c, int64_t tokens, int64_t threads, int64_t kv_block_tokens) {
  const uint64_t t = u(tokens), B = u(kv_block_tokens), hd = u(c.head_dim), H = u(c.n_heads);
  const uint64_t group = u(c.n_heads / std::max<int64_t>(c.n_kv_heads, 1));
  const uint64_t by_heads = 2 * B * hd + group * B + 2 * group * t;
  const uint64_t by_positions = 2 * H;
  return {std::max(by_heads, by_positions), 2 * u(threads) * H * (hd + 2)};
}

uint64_t kv_bytes_per_token(const ModelConfig& c, DType kv_dtype) {
  auto per_layer = dtype_bytes(kv_dtype, u(c.kv_dim()));
  if (!per_layer)
    throw InputError("kv dtype " + std::string(to_string(kv_dtype)) + " needs n_kv_heads*head_dim (" +
                     std::to_string(c.kv_dim()) + ") to be a multiple of its block size");
  return 2 * u(c.n_layers) * *per_layer;
}

uint64_t estimate_weight_bytes(const ModelConfig& c, DType dtype) {
  const DTypeInfo& info = dtype_info(dtype);
  auto matrix = [&](int64_t rows, int64_t cols) { return dtype_bytes(dtype, u(rows) * u(cols)).value_or(0); };
  auto vec = [&](int64_t n) { return u(n) * (info.quantized ? 4 : info.block_bytes); };
  const int64_t d = c.hidden_size;
  uint64_t layer = matrix(c.q_dim(), d) + 2 * matrix(c.kv_dim(), d) + matrix(d, c.q_dim()) +
                   3 * matrix(c.intermediate_size, d) + 2 * vec(d);
  if (c.attention_bias) layer += vec(c.q_dim()) + 2 * vec(c.kv_dim());
  if (c.qk_norm) layer += 2 * vec(c.head_dim);
  uint64_t total = u(c.n_layers) * layer + matrix(c.vocab_size, d) + vec(d);
  if (!c.tie_embeddings) total += matrix(c.vocab_size, d);
  return total;
}

MemoryPlan plan_memory(const ModelConfig& c, uint64_t weight_bytes, const FitRequest& r) {
  if (r.context < 1) throw InputError("--ctx must be at least 1");
  if (r.batch < 1) throw InputError("--batch must be at least 1");
  if (r.prefill_chunk < 1) throw InputError("--prefill-chunk must be at least 1");
  MemoryPlan p;
  p.limit = r.limit;
  p.model_context = c.max_context;
  p.weights = weight_bytes;
  p.kv_per_token = kv_bytes_per_token(c, r.kv_dtype);
  p.kv_block = pool_bucket_size(p.kv_per_token * u(r.kv_block_tokens), r.page);
  uint64_t blocks_per_seq = (u(r.context) + u(r.kv_block_tokens) - 1) / u(r.kv_block_tokens);
  p.kv_total = u(r.batch) * blocks_per_seq * p.kv_block;
  int64_t chunk = std::min(r.prefill_chunk, r.context);
  p.activations = activation_layout(c, chunk, r.threads, r.kv_block_tokens).total(r.page);
  p.total = p.weights + p.kv_total + p.activations;
  p.fits = p.total <= p.limit;
  // Contexts longer than this request's prefill a full chunk at a time.
  uint64_t fixed = p.weights + activation_layout(c, r.prefill_chunk, r.threads, r.kv_block_tokens).total(r.page);
  if (fixed < p.limit) {
    uint64_t blocks = (p.limit - fixed) / (u(r.batch) * p.kv_block);
    p.max_context = static_cast<int64_t>(std::min<uint64_t>(blocks * u(r.kv_block_tokens), INT64_MAX / 2));
  }
  return p;
}

}  // namespace umi
