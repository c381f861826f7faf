// The CPU backend: ops on the host's threads, weights read in place from the
// mapped file (nothing copied or dequantized to a full-size buffer), KV
// blocks and activations in the process's pool. On unified memory (Apple
// Silicon) this is also the memory a GPU backend would share.
#pragma once

#include <utility>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_pool.h"

namespace umi::cpu {

class CpuBackend final : public Backend {
 public:
  CpuBackend(Pool& pool, const BackendSetup& setup);

  Device device() const override { return Device::cpu; }
  Pool& memory() override { return pool_; }
  KvBlockPool& kv_pool() override { return kv_pool_; }
  int64_t threads() const override { return threads_.size(); }
  void bind_weights(ModelWeights& w, uint64_t mapped_bytes) override;
  Buffer scratch(int64_t count, const char* what) override;

  void begin_pass(const PassTokens& pass) override { pass_ = pass; }
  void embed(const MatrixView& table, float* x) override;
  void rms_norm(const float* x, const VectorView& w, int64_t rows, float* out) override;
  void matmul(const MatrixView& w, const float* x, int64_t rows, float* y) override;
  void matmuls(const float* x, int64_t rows, std::span<const Product> products) override;
  void gated_matmul(const MatrixView& wg, const MatrixView& wu, const float* x, int64_t rows, float* gate, float* up) override;
  void add_bias(float* x, const VectorView& b, int64_t rows) override;
  void rope_store_kv(int64_t layer, float* q, float* k, const float* v, const VectorView& q_norm,
                     const VectorView& k_norm) override;
  void attention(int64_t layer, const float* q, float* out) override;
  void swiglu(float* gate, const float* up, int64_t n) override;
  void add(float* x, const float* y, int64_t n) override;
  void read(const float* src, int64_t n, float* host) override;
  void argmax(const float* src, int64_t rows, int64_t n, int32_t* host) override;
  void top_k(const float* src, int64_t rows, int64_t n, TopK* out) override;
  void draw(const float* src, int64_t rows, int64_t n, TokenDraw* out) override;
  void mask_logits(float* logits, int64_t n, const uint32_t* allowed) override;

 private:
  Pool& pool_;
  BackendSetup setup_;
  ThreadPool threads_;
  KvBlockPool kv_pool_;
  Reservation weights_;
  PassTokens pass_;
  std::vector<float> rope_cos_sin_;  // [head_dim]: one position's cos, then sin
  DrawScratch draw_scratch_;         // a whole-row draw's working memory (draw_token)
  // Scratch of the matrix products and of attention, sized as
  // activation_layout() says (what `umi fit` reports).
  Buffer quantized_, gemm_pack_, attn_scratch_;
  MatmulScratch matmul_scratch() const;

  // Attention (attention.cpp): one layer's geometry, and the two ways a
  // pass's runs go (by KV head for runs of several tokens, by positions for
  // single-token runs).
  struct AttentionShape {
    int64_t H = 0, Hkv = 0, hd = 0, group = 0, B = 0;  // query heads, KV heads, head dim, heads a KV head serves, block tokens
    DType dtype = DType::F16;
    size_t head_bytes = 0, row = 0, layer_offset = 0;  // a head's slice of a KV row, a row, the layer's place in a block
    float scale = 1;
    uint64_t per_thread = 0, partials = 0;  // attention scratch, floats (memory_plan's attention_scratch)
    size_t partial_floats = 0;              // one part's partial output: [H, hd], then a max and a denominator per head
  };
  AttentionShape attention_shape(int64_t layer) const;
  void attend_by_heads(const AttentionShape& s, const float* q, float* out);
  void attend_by_positions(const AttentionShape& s, const float* q, float* out);
  void merge_parts(const AttentionShape& s, const float* partial_area, float* out) const;
  // One work item of attend_by_positions: a run's blocks [first_block,
  // end_block); partial: its slot among the partial outputs, -1 when the
  // part is the whole run.
  struct Part {
    size_t run = 0;
    int64_t first_block = 0, end_block = 0;
    int32_t partial = -1;
  };
  std::vector<size_t> several_token_runs_, single_token_runs_;  // indices into pass_.runs
  std::vector<Part> parts_;
};

}  // namespace umi::cpu
