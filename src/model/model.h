// A loaded model: its mapped files, config, bound weights, the backend that
// runs it (which owns the KV block pool), activation scratch, and the forward
// pass over a chunk of tokens of one or more sequences.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/backend.h"
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
  std::span<const int32_t> tokens{};
  float* logits = nullptr;  // the last token's logits [V], or
  int32_t* token = nullptr; // only their argmax (greedy decoding: the row stays on the device), or
  TopK* top = nullptr;      // only their best top->k candidates (sampling with top-k), or
  TokenDraw* draw = nullptr; // only the token drawn by draw's settings (sampling, top-k off)
  // With token, top or draw: the tokens that may be drawn (a constrained output:
  // JSON mode, a schema), asked for once the pass is running so that the
  // host works them out beside a GPU; a bit each (Backend::mask_logits), the
  // others masked before the selection. Null, or returning null: all.
  std::function<const uint32_t*()> allowed = nullptr;
  bool outputs() const { return logits || token || top || draw; }
  bool selects() const { return token || top || draw; }  // the row stays where it is
};

struct ModelOptions {
  DType kv_dtype = DType::F16;
  int64_t kv_block_tokens = 16;
  int64_t prefill_chunk = 512;  // most tokens one forward call takes
  int64_t max_batch = 1;        // most sequences one forward call takes (each gets logits)
  int threads = 0;              // 0: all cores
  Device device = Device::cpu;  // automatic: a GPU when the build and the machine have one
  // On a GPU: the device memory to draw from, shared with the other models
  // of the process (make_device_memory for `device`; not owned, outlives the
  // model). Null: the model makes its own, of device_memory_limit bytes
  // (0: what the device has free, less a margin).
  Pool* device_memory = nullptr;
  uint64_t device_memory_limit = 0;
};

class Model {
 public:
  // Maps the files, checks every tensor, and counts the weight bytes against
  // the pool's limit. Throws FormatError/InputError/OutOfMemory.
  Model(const std::string& path, Pool& pool, ModelOptions options = {});

  const ModelConfig& config() const { return config_; }
  const ModelFiles& files() const { return files_; }
  const ModelOptions& options() const { return options_; }
  KvBlockPool& kv_pool() { return backend_->kv_pool(); }
  // The host pool (the engine's buffers); KV blocks and activations live in
  // kv_pool().memory(), which is this pool on the CPU.
  Pool& pool() { return pool_; }
  Device device() const { return backend_->device(); }
  // Threads the backend's ops use (the CPU's pool; 1 on a device).
  int64_t threads() const { return backend_->threads(); }
  // Bytes of weights one decode step reads per pass: every layer's matrices,
  // norms and biases and the output matrix (of the embedding, one row). What
  // the decode roofline divides by the machine's read bandwidth.
  uint64_t weight_bytes_per_pass() const;

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
  void plan_pass(std::span<const ForwardItem> items);
  // The final RMSNorm of each item's last token into xn's first rows, and
  // those rows' logits (or argmax, or candidates) to where each item asked; consecutive
  // rows are one call each. Returns the rows with outputs.
  int64_t norm_outputs(std::span<const ForwardItem> items, const float* x, float* xn);
  void mask_outputs(std::span<const ForwardItem> items, float* logits);
  void copy_outputs(std::span<const ForwardItem> items, const float* logits);

  Pool& pool_;
  ModelOptions options_;
  ModelFiles files_;
  ModelConfig config_;
  ModelWeights w_;
  std::unique_ptr<DeviceMemory> own_device_memory_;  // when options_.device_memory is null (declared before the backend that uses it)
  std::unique_ptr<Backend> backend_;
  // This pass's tokens, positions and runs, as the backend sees them.
  std::vector<int32_t> pass_ids_;
  std::vector<int64_t> pass_positions_;
  std::vector<TokenRun> pass_runs_;
  // Activation scratch for one chunk, in the backend's memory: exactly the
  // buffers of activation_layout(), which is what `umi fit` reports.
  Buffer x_, xn_, q_, k_, v_, attn_, gate_, up_, logits_;
};

}  // namespace umi
