#include "model/weights.h"

#include "backend/cpu/kernels.h"
#include "core/error.h"

namespace umi {

namespace {

struct Namer {
  bool gguf;
  std::string layer(int64_t i, const char* hf, const char* gg) const {
    return gguf ? "blk." + std::to_string(i) + "." + gg : "model.layers." + std::to_string(i) + "." + hf;
  }
};

class Binder {
 public:
  Binder(const ModelFiles& f, const ModelConfig& c) : files_(f), config_(c) {}

  MatrixView matrix(const std::string& name, int64_t rows, int64_t cols) const {
    const TensorView& t = need(name);
    if (t.shape.size() != 2 || t.shape[0] != rows || t.shape[1] != cols)
      fail(t, "shape " + t.shape_string() + " but the config needs [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
    if (!cpu::matmul_supports(t.dtype))
      fail(t, "dtype " + std::string(to_string(t.dtype)) + " is not supported for matrices (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs)");
    return {t.dtype, t.data, rows, cols};
  }

  VectorView vector(const std::string& name, int64_t size) const {
    const TensorView& t = need(name);
    if (t.n_elements() != static_cast<uint64_t>(size))
      fail(t, "has " + std::to_string(t.n_elements()) + " elements but the config needs " + std::to_string(size));
    if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
      fail(t, "dtype " + std::string(to_string(t.dtype)) + " is not supported for vectors (f32, f16, bf16)");
    return {t.dtype, t.data, size};
  }

  bool has(const std::string& name) const { return files_.find(name) != nullptr; }

 private:
  const TensorView& need(const std::string& name) const {
    const TensorView* t = files_.find(name);
    if (!t)
      throw FormatError(files_.path(), "tensor '" + name + "'",
                        "missing: the " + std::string(to_string(config_.arch)) + " architecture needs it");
    return *t;
  }
  [[noreturn]] void fail(const TensorView& t, const std::string& why) const {
    throw FormatError(files_.path(), "tensor '" + t.name + "'", why);
  }
  const ModelFiles& files_;
  const ModelConfig& config_;
};

}  // namespace

ModelWeights bind_weights(const ModelFiles& files, const ModelConfig& c) {
  c.require_supported(files.path());
  const bool gguf = files.format() == ModelFormat::gguf;
  Namer n{gguf};
  Binder b(files, c);
  const int64_t d = c.hidden_size, ff = c.intermediate_size;
  ModelWeights w;
  w.embed = b.matrix(gguf ? "token_embd.weight" : "model.embed_tokens.weight", c.vocab_size, d);
  w.final_norm = b.vector(gguf ? "output_norm.weight" : "model.norm.weight", d);
  std::string out = gguf ? "output.weight" : "lm_head.weight";
  w.output = b.has(out) ? b.matrix(out, c.vocab_size, d) : w.embed;
  w.rope_interleaved = gguf && (c.arch == Arch::llama || c.arch == Arch::mistral);
  if (gguf && b.has("rope_freqs.weight")) w.rope_freqs = b.vector("rope_freqs.weight", c.head_dim / 2);
  for (int64_t i = 0; i < c.n_layers; ++i) {
    LayerWeights l;
    l.attn_norm = b.vector(n.layer(i, "input_layernorm.weight", "attn_norm.weight"), d);
    l.ffn_norm = b.vector(n.layer(i, "post_attention_layernorm.weight", "ffn_norm.weight"), d);
    l.wq = b.matrix(n.layer(i, "self_attn.q_proj.weight", "attn_q.weight"), c.q_dim(), d);
    l.wk = b.matrix(n.layer(i, "self_attn.k_proj.weight", "attn_k.weight"), c.kv_dim(), d);
    l.wv = b.matrix(n.layer(i, "self_attn.v_proj.weight", "attn_v.weight"), c.kv_dim(), d);
    l.wo = b.matrix(n.layer(i, "self_attn.o_proj.weight", "attn_output.weight"), d, c.q_dim());
    l.gate = b.matrix(n.layer(i, "mlp.gate_proj.weight", "ffn_gate.weight"), ff, d);
    l.up = b.matrix(n.layer(i, "mlp.up_proj.weight", "ffn_up.weight"), ff, d);
    l.down = b.matrix(n.layer(i, "mlp.down_proj.weight", "ffn_down.weight"), d, ff);
    if (c.attention_bias) {
      l.q_bias = b.vector(n.layer(i, "self_attn.q_proj.bias", "attn_q.bias"), c.q_dim());
      l.k_bias = b.vector(n.layer(i, "self_attn.k_proj.bias", "attn_k.bias"), c.kv_dim());
      l.v_bias = b.vector(n.layer(i, "self_attn.v_proj.bias", "attn_v.bias"), c.kv_dim());
    }
    if (c.qk_norm) {
      l.q_norm = b.vector(n.layer(i, "self_attn.q_norm.weight", "attn_q_norm.weight"), c.head_dim);
      l.k_norm = b.vector(n.layer(i, "self_attn.k_norm.weight", "attn_k_norm.weight"), c.head_dim);
    }
    w.layers.push_back(l);
  }
  return w;
}

}  // namespace umi
