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

struct ModelOptions {
  DType kv_dtype = DType::F16;
  int64_t kv_block_tokens = 16;
  int64_t prefill_chunk = 512;  // most tokens one forward call takes
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

  // Runs tokens (at most options().prefill_chunk) at positions pos0.. of one
  // sequence whose KV cache must already hold room for pos0 + tokens.size().
  // Writes the last position's logits ([vocab]) when `logits` is non-null.
  void forward(std::span<const int32_t> tokens, int64_t pos0, SequenceKv& kv, float* logits);

 private:
  void attention(int64_t layer, int64_t tokens, int64_t pos0, const SequenceKv& kv);

  Pool& pool_;
  ModelOptions options_;
  ModelFiles files_;
  ModelConfig config_;
  ModelWeights w_;
  Reservation weights_reserved_;
  cpu::ThreadPool threads_;
  KvBlockPool kv_pool_;
  std::vector<float> inv_freq_;  // [head_dim / 2]
  ActivationLayout layout_;
  // Activation scratch for one chunk: exactly the buffers of `layout_`, which
  // is what `umi fit` reports.
  Buffer x_, xn_, q_, k_, v_, attn_, gate_, up_, quantized_, logits_, attn_scratch_;
  void mm(const cpu::MatrixView& w, const float* x, int64_t tokens, float* y);
};

}  // namespace umi
