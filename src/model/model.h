// A loaded model: its mapped files, config, bound weights, thread pool, KV
// block pool and activation scratch, and the forward pass over a chunk of one
// sequence's tokens.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/cpu/thread_pool.h"
#include "memory/pool.h"
#include "model/kv_cache.h"
#include "model/memory_plan.h"
#include "model/weights.h"

namespace umi {

class SequenceKv;

// One sequence's share of a forward pass: `tokens` at positions pos0.. of the
// sequence whose KV cache is `kv` (room already reserved). `logits`, when not
// null, receives the logits after its last token ([vocab]).
struct ForwardItem {
  SequenceKv* kv = nullptr;
  int64_t pos0 = 0;
  std::span<const int32_t> tokens;
  float* logits = nullptr;
};

struct ModelOptions {
  DType kv_dtype = DType::F16;
  int64_t kv_block_tokens = 16;
  int64_t prefill_chunk = 512;  // most tokens one forward call takes
  int64_t max_batch = 1;        // most sequences one forward call takes (each gets logits)
  int threads = 0;              // 0: all cores
};

class Model {
 public:
  // Maps the files, checks every tensor, and counts the weight bytes against
  // the pool's limit. Throws FormatError/InputError/OutOfMemory.
  Model(const std::string& path, Pool& pool, ModelOptions options = {});

  const ModelConfig& config() const { return config_; }
  const ModelFiles& files() const { return files_; }
  const ModelOptions& options() const { return options_; }
  KvBlockPool& kv_pool() { return kv_pool_; }
  Pool& pool() { return pool_; }

  // One pass over several sequences' tokens (continuous batching: decode
  // tokens and prefill chunks together): every weight is read once for all
  // of them. At most options().prefill_chunk tokens and options().max_batch
  // items in all.
  void forward(std::span<const ForwardItem> items);
  // The same for one sequence.
  void forward(std::span<const int32_t> tokens, int64_t pos0, SequenceKv& kv, float* logits) {
    ForwardItem item{&kv, pos0, tokens, logits};
    forward(std::span<const ForwardItem>(&item, 1));
  }

 private:
  // Where each token of a pass belongs.
  struct TokenSlot {
    const SequenceKv* kv;
    int64_t position;
  };
  void attention(int64_t layer, int64_t tokens);
  std::vector<TokenSlot> slots_;       // [tokens of the current pass]
  std::vector<int32_t> pass_tokens_;  // [tokens of the current pass]
  std::vector<std::pair<int64_t, int64_t>> runs_;  // attention: [first, end) tokens of one sequence in the pass

  Pool& pool_;
  ModelOptions options_;
  ModelFiles files_;
  ModelConfig config_;
  ModelWeights w_;
  Reservation weights_reserved_;
  cpu::ThreadPool threads_;
  KvBlockPool kv_pool_;
  std::vector<float> inv_freq_;      // [head_dim / 2]
  std::vector<float> rope_cos_sin_;  // [head_dim]: one position's cos, then sin
  ActivationLayout layout_;
  // Activation scratch for one chunk: exactly the buffers of `layout_`, which
  // is what `umi fit` reports.
  Buffer x_, xn_, q_, k_, v_, attn_, gate_, up_, quantized_, gemm_pack_, logits_, attn_scratch_;
  void mm(const cpu::MatrixView& w, const float* x, int64_t tokens, float* y);
};

}  // namespace umi
