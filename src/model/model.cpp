#include "model/model.h"

#include <cmath>

#include "core/error.h"
#include "core/units.h"

namespace umi {

Model::Model(const std::string& path, Pool& pool, ModelOptions options)
    : pool_(pool),
      options_(options),
      files_(ModelFiles::open(path)),
      config_(config_from_files(files_)),
      w_(bind_weights(files_, config_)),
      threads_(options.threads),
      kv_pool_(pool, KvLayout::for_model(config_, options.kv_dtype, options.kv_block_tokens)) {
  if (options_.prefill_chunk < 1 || options_.prefill_chunk > 65536) throw InputError("--prefill-chunk must be 1..65536");
  // Mapped weights occupy memory once touched: they count against the limit.
  weights_reserved_ = pool_.try_reserve(files_.tensor_bytes(), MemoryUse::weights);
  if (!weights_reserved_)
    throw OutOfMemory("model weights (" + format_bytes(files_.tensor_bytes()) + ") do not fit the memory limit of " +
                      format_bytes(pool_.limit()));
  inv_freq_.resize(static_cast<size_t>(config_.head_dim / 2));
  rope_cos_sin_.resize(inv_freq_.size() * 2);
  for (size_t i = 0; i < inv_freq_.size(); ++i) inv_freq_[i] = static_cast<float>(rope_frequency(config_, static_cast<int64_t>(i)));
  if (w_.rope_freqs)
    for (size_t i = 0; i < inv_freq_.size(); ++i) inv_freq_[i] /= w_.rope_freqs.at(static_cast<int64_t>(i));
  if (options_.max_batch < 1 || options_.max_batch > options_.prefill_chunk)
    throw InputError("max batch must be 1..prefill chunk (" + std::to_string(options_.prefill_chunk) + ")");
  layout_ = activation_layout(config_, options_.prefill_chunk, threads_.size(), options_.kv_block_tokens, options_.max_batch);
  slots_.reserve(static_cast<size_t>(options_.prefill_chunk));
  pass_tokens_.reserve(static_cast<size_t>(options_.prefill_chunk));
  auto scratch = [&](uint64_t bytes, const char* what) { return pool_.allocate(bytes, MemoryUse::activations, what); };
  x_ = scratch(layout_.residual, "activations (residual)");
  xn_ = scratch(layout_.normed, "activations (normed)");
  q_ = scratch(layout_.q, "activations (q)");
  k_ = scratch(layout_.k, "activations (k)");
  v_ = scratch(layout_.v, "activations (v)");
  attn_ = scratch(layout_.attn_out, "activations (attention)");
  gate_ = scratch(layout_.gate, "activations (gate)");
  up_ = scratch(layout_.up, "activations (up)");
  quantized_ = scratch(layout_.quantized, "activations (q8)");
  if (layout_.gemm_pack) gemm_pack_ = scratch(layout_.gemm_pack, "gemm tiles");
  logits_ = scratch(layout_.logits, "logits");
  attn_scratch_ = scratch(layout_.attn_scratch, "attention scratch");
  files_.advise(Advice::willneed);
}

void Model::mm(const cpu::MatrixView& w, const float* x, int64_t tokens, float* y) {
  const cpu::MatmulScratch scratch{quantized_.data(), quantized_.size(), gemm_pack_.data(), gemm_pack_.size()};
  cpu::matmul(threads_, w, x, tokens, y, &scratch);
}

}  // namespace umi
