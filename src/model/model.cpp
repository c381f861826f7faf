#include "model/model.h"

#include <cmath>

#include "core/error.h"
#include "core/units.h"

namespace umi {

namespace {

BackendSetup backend_setup(const ModelConfig& c, const ModelWeights& w, const ModelOptions& o, Pool* device_memory) {
  BackendSetup s;
  s.config = c;
  s.kv = KvLayout::for_model(c, o.kv_dtype, o.kv_block_tokens);
  s.inv_freq.resize(static_cast<size_t>(c.head_dim / 2));
  for (size_t i = 0; i < s.inv_freq.size(); ++i) s.inv_freq[i] = static_cast<float>(rope_frequency(c, static_cast<int64_t>(i)));
  if (w.rope_freqs)
    for (size_t i = 0; i < s.inv_freq.size(); ++i) s.inv_freq[i] /= w.rope_freqs.at(static_cast<int64_t>(i));
  s.rope_interleaved = w.rope_interleaved;
  s.max_tokens = o.prefill_chunk;
  s.threads = o.threads;
  s.device_memory = device_memory;
  return s;
}

}  // namespace

Model::Model(const std::string& path, Pool& pool, ModelOptions options)
    : pool_(pool), options_(options), files_(ModelFiles::open(path)), config_(config_from_files(files_)),
      w_(bind_weights(files_, config_)) {
  if (options_.prefill_chunk < 1 || options_.prefill_chunk > 65536) throw InputError("--prefill-chunk must be 1..65536");
  if (options_.max_batch < 1 || options_.max_batch > options_.prefill_chunk)
    throw InputError("max batch must be 1..prefill chunk (" + std::to_string(options_.prefill_chunk) + ")");
  Pool* device_memory = options_.device_memory;
  if (!device_memory) {
    own_device_memory_ = make_device_memory(options_.device, options_.device_memory_limit);
    if (own_device_memory_) device_memory = &own_device_memory_->pool();
  }
  backend_ = make_backend(options_.device, pool_, backend_setup(config_, w_, options_, device_memory));
  backend_->bind_weights(w_, files_.tensor_bytes());
  pass_ids_.reserve(static_cast<size_t>(options_.prefill_chunk));
  pass_positions_.reserve(static_cast<size_t>(options_.prefill_chunk));
  const ActivationLayout a = activation_layout(config_, options_.prefill_chunk, backend_->threads(),
                                               options_.kv_block_tokens, options_.max_batch);
  auto scratch = [&](uint64_t bytes, const char* what) {
    return backend_->scratch(static_cast<int64_t>(bytes / sizeof(float)), what);
  };
  x_ = scratch(a.residual, "activations (residual)");
  xn_ = scratch(a.normed, "activations (normed)");
  q_ = scratch(a.q, "activations (q)");
  k_ = scratch(a.k, "activations (k)");
  v_ = scratch(a.v, "activations (v)");
  attn_ = scratch(a.attn_out, "activations (attention)");
  gate_ = scratch(a.gate, "activations (gate)");
  up_ = scratch(a.up, "activations (up)");
  logits_ = scratch(a.logits, "logits");
  if (backend_->device() == Device::cpu) files_.advise(Advice::willneed);
}

uint64_t Model::weight_bytes_per_pass() const {
  uint64_t bytes = w_.output.bytes() + w_.final_norm.bytes() + w_.embed.row_bytes();
  for (const LayerWeights& L : w_.layers) {
    for (const MatrixView* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down}) bytes += m->bytes();
    for (const VectorView* v : {&L.attn_norm, &L.ffn_norm, &L.q_norm, &L.k_norm, &L.q_bias, &L.k_bias, &L.v_bias})
      if (*v) bytes += v->bytes();
  }
  return bytes;
}

}  // namespace umi
