#include "model/config.h"

#include <cmath>

#include "core/error.h"
#include "format/gguf.h"
#include "format/json_strict.h"

namespace umi {

using nlohmann::json;

namespace {

// Generous ceilings: any real model is far inside them, and values beyond
// them would only overflow size arithmetic downstream.
constexpr int64_t kMaxDim = int64_t{1} << 20;
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxLayers = 4096;
constexpr int64_t kMaxContext = int64_t{1} << 26;

Arch arch_from_name(std::string_view name) {
  if (name == "LlamaForCausalLM" || name == "llama") return Arch::llama;
  if (name == "MistralForCausalLM" || name == "mistral") return Arch::mistral;
  if (name == "Qwen2ForCausalLM" || name == "qwen2") return Arch::qwen2;
  if (name == "Qwen3ForCausalLM" || name == "qwen3") return Arch::qwen3;
  return Arch::unknown;
}

void check_range(std::string_view source, std::string_view field, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi)
    throw FormatError(source, field, std::to_string(v) + " is outside " + std::to_string(lo) + ".." + std::to_string(hi));
}

// Shared checks once every field is filled, whatever the source.
void validate(ModelConfig& c, std::string_view source) {
  check_range(source, "vocab_size", c.vocab_size, 1, kMaxVocab);
  check_range(source, "hidden_size", c.hidden_size, 1, kMaxDim);
  check_range(source, "intermediate_size", c.intermediate_size, 1, kMaxDim * 4);
  check_range(source, "num_hidden_layers", c.n_layers, 1, kMaxLayers);
  check_range(source, "num_attention_heads", c.n_heads, 1, 4096);
  if (c.n_kv_heads == 0) c.n_kv_heads = c.n_heads;
  check_range(source, "num_key_value_heads", c.n_kv_heads, 1, c.n_heads);
  if (c.n_heads % c.n_kv_heads != 0)
    throw FormatError(source, "num_key_value_heads",
                      std::to_string(c.n_kv_heads) + " does not divide num_attention_heads " + std::to_string(c.n_heads));
  if (c.head_dim == 0) {
    if (c.hidden_size % c.n_heads != 0)
      throw FormatError(source, "head_dim", "not given and hidden_size is not a multiple of num_attention_heads");
    c.head_dim = c.hidden_size / c.n_heads;
  }
  check_range(source, "head_dim", c.head_dim, 1, 1024);
  if (c.head_dim % 2 != 0) throw FormatError(source, "head_dim", "must be even for rotary embeddings");
  check_range(source, "max_position_embeddings", c.max_context, 1, kMaxContext);
  if (!(c.rms_eps > 0 && c.rms_eps < 1)) throw FormatError(source, "rms_norm_eps", "must be in (0, 1)");
  if (!(c.rope_theta > 0 && std::isfinite(c.rope_theta))) throw FormatError(source, "rope_theta", "must be positive");
  const RopeScaling& rs = c.rope_scaling;
  if (rs.type != RopeScaling::Type::none && !(rs.factor >= 1.0 && rs.factor <= 1024.0))
    throw FormatError(source, "rope_scaling.factor", "must be in 1..1024");
  if (rs.type == RopeScaling::Type::llama3) {
    if (!(rs.high_freq_factor > rs.low_freq_factor && rs.low_freq_factor > 0))
      throw FormatError(source, "rope_scaling", "needs high_freq_factor > low_freq_factor > 0");
    check_range(source, "rope_scaling.original_max_position_embeddings", rs.original_context, 1, kMaxContext);
  }
}

int64_t get_int(const json& j, std::string_view source, const char* key, std::optional<int64_t> fallback = {}) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    throw FormatError(source, key, "missing");
  }
  if (!it->is_number_integer()) throw FormatError(source, key, "is not an integer");
  return it->get<int64_t>();
}

double get_number(const json& j, std::string_view source, const char* key, double fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) throw FormatError(source, key, "is not a number");
  return it->get<double>();
}

std::optional<int64_t> first_token_id(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_array() && !it->empty() && (*it)[0].is_number_integer()) return (*it)[0].get<int64_t>();
  return std::nullopt;
}

// Older configs say "rope_scaling": {...} beside "rope_theta"; transformers 5
// writes both into "rope_parameters".
RopeScaling rope_scaling_from_json(const json& j, std::string_view source) {
  RopeScaling rs;
  auto it = j.find("rope_scaling");
  if (it == j.end() || it->is_null()) it = j.find("rope_parameters");
  if (it == j.end() || it->is_null()) return rs;
  if (!it->is_object()) throw FormatError(source, "rope_scaling", "is not an object");
  std::string type;
  for (const char* k : {"rope_type", "type"})
    if (auto t = it->find(k); t != it->end() && t->is_string()) type = t->get<std::string>();
  if (type == "default" || type.empty()) return rs;
  if (type == "linear") rs.type = RopeScaling::Type::linear;
  else if (type == "llama3") rs.type = RopeScaling::Type::llama3;
  else throw FormatError(source, "rope_scaling", "type \"" + type.substr(0, 40) + "\" is not supported (linear, llama3)");
  rs.factor = get_number(*it, source, "factor", 1.0);
  rs.low_freq_factor = get_number(*it, source, "low_freq_factor", 1.0);
  rs.high_freq_factor = get_number(*it, source, "high_freq_factor", 4.0);
  rs.original_context = get_int(*it, source, "original_max_position_embeddings", int64_t{8192});
  return rs;
}

}  // namespace

std::string_view to_string(Arch a) {
  switch (a) {
    case Arch::llama: return "llama";
    case Arch::mistral: return "mistral";
    case Arch::qwen2: return "qwen2";
    case Arch::qwen3: return "qwen3";
    case Arch::unknown: return "unknown";
  }
  return "unknown";
}

double rope_frequency(const ModelConfig& c, int64_t i, bool scaled) {
  double freq = 1.0 / std::pow(c.rope_theta, static_cast<double>(2 * i) / static_cast<double>(c.head_dim));
  const RopeScaling& rs = c.rope_scaling;
  if (!scaled || rs.type == RopeScaling::Type::none) return freq;
  if (rs.type == RopeScaling::Type::linear) return freq / rs.factor;
  const double original = static_cast<double>(rs.original_context);
  const double wavelen = 2 * M_PI / freq;
  if (wavelen > original / rs.low_freq_factor) return freq / rs.factor;
  if (wavelen < original / rs.high_freq_factor) return freq;
  double smooth = (original / wavelen - rs.low_freq_factor) / (rs.high_freq_factor - rs.low_freq_factor);
  return (1 - smooth) * freq / rs.factor + smooth * freq;
}

std::string supported_architectures() { return "llama, mistral, qwen2, qwen3"; }

void ModelConfig::require_supported(std::string_view source) const {
  if (!supported())
    throw InputError(std::string(source) + ": architecture \"" + arch_name + "\" is not supported (supported: " +
                     supported_architectures() + ")");
}

ModelConfig config_from_hf_json(std::string_view json_text, std::string_view source) {
  json j = parse_json_strict(json_text, source, "config");
  if (!j.is_object()) throw FormatError(source, "config", "is not a JSON object");
  ModelConfig c;
  if (auto a = j.find("architectures"); a != j.end() && a->is_array() && !a->empty() && (*a)[0].is_string())
    c.arch_name = (*a)[0].get<std::string>();
  else if (auto t = j.find("model_type"); t != j.end() && t->is_string())
    c.arch_name = t->get<std::string>();
  else
    throw FormatError(source, "architectures", "missing (and no model_type)");
  c.arch = arch_from_name(c.arch_name);
  if (c.arch == Arch::unknown)
    if (auto t = j.find("model_type"); t != j.end() && t->is_string()) c.arch = arch_from_name(t->get<std::string>());

  c.vocab_size = get_int(j, source, "vocab_size");
  c.hidden_size = get_int(j, source, "hidden_size");
  c.intermediate_size = get_int(j, source, "intermediate_size");
  c.n_layers = get_int(j, source, "num_hidden_layers");
  c.n_heads = get_int(j, source, "num_attention_heads");
  c.n_kv_heads = get_int(j, source, "num_key_value_heads", c.n_heads);
  c.head_dim = get_int(j, source, "head_dim", int64_t{0});
  c.max_context = get_int(j, source, "max_position_embeddings", int64_t{2048});
  c.rms_eps = get_number(j, source, "rms_norm_eps", 1e-6);
  c.rope_theta = get_number(j, source, "rope_theta", 10000.0);
  if (auto rp = j.find("rope_parameters"); rp != j.end() && rp->is_object())
    c.rope_theta = get_number(*rp, source, "rope_theta", c.rope_theta);
  c.rope_scaling = rope_scaling_from_json(j, source);
  if (auto t = j.find("tie_word_embeddings"); t != j.end() && t->is_boolean()) c.tie_embeddings = t->get<bool>();
  c.attention_bias = c.arch == Arch::qwen2;
  if (auto b = j.find("attention_bias"); b != j.end() && b->is_boolean()) c.attention_bias = b->get<bool>();
  c.qk_norm = c.arch == Arch::qwen3;
  auto d = j.find("torch_dtype");
  if (d == j.end() || !d->is_string()) d = j.find("dtype");
  if (d != j.end() && d->is_string()) {
    std::string name = d->get<std::string>();
    if (name == "float32") c.weight_dtype = DType::F32;
    else if (name == "float16") c.weight_dtype = DType::F16;
    else if (name == "bfloat16") c.weight_dtype = DType::BF16;
  }
  c.bos_token_id = first_token_id(j, "bos_token_id");
  c.eos_token_id = first_token_id(j, "eos_token_id");
  validate(c, source);
  return c;
}

ModelConfig config_from_gguf(const GgufFile& g) {
  std::string_view source = g.path;
  auto arch_name = g.get_string("general.architecture");
  if (!arch_name) throw FormatError(source, "general.architecture", "missing or not a string");
  ModelConfig c;
  c.arch_name = std::string(*arch_name);
  c.arch = arch_from_name(c.arch_name);
  std::string prefix = c.arch_name + ".";
  auto need = [&](const char* key) -> int64_t {
    auto v = g.get_uint(prefix + key);
    if (!v) throw FormatError(source, prefix + key, "missing or not a non-negative integer");
    if (*v > static_cast<uint64_t>(kMaxDim) * 64) throw FormatError(source, prefix + key, "value is absurd");
    return static_cast<int64_t>(*v);
  };
  auto optional_int = [&](const char* key, int64_t fallback) -> int64_t {
    auto v = g.get_uint(prefix + key);
    if (v && *v > static_cast<uint64_t>(kMaxContext)) throw FormatError(source, prefix + key, "value is absurd");
    return v ? static_cast<int64_t>(*v) : fallback;
  };
  c.hidden_size = need("embedding_length");
  c.intermediate_size = need("feed_forward_length");
  c.n_layers = need("block_count");
  c.n_heads = need("attention.head_count");
  c.n_kv_heads = optional_int("attention.head_count_kv", c.n_heads);
  c.head_dim = optional_int("attention.key_length", 0);
  c.max_context = optional_int("context_length", 2048);
  c.rms_eps = g.get_float(prefix + "attention.layer_norm_rms_epsilon").value_or(1e-5);
  c.rope_theta = g.get_float(prefix + "rope.freq_base").value_or(10000.0);
  if (auto t = g.get_string(prefix + "rope.scaling.type"); t && *t == "linear") {
    c.rope_scaling.type = RopeScaling::Type::linear;
    c.rope_scaling.factor = g.get_float(prefix + "rope.scaling.factor").value_or(1.0);
  }
  // Vocabulary: the explicit key, else the tokenizer's token list, else the
  // embedding's row count.
  if (auto v = g.get_uint(prefix + "vocab_size")) c.vocab_size = static_cast<int64_t>(std::min<uint64_t>(*v, kMaxVocab + 1));
  else if (const GgufValue* tokens = g.find("tokenizer.ggml.tokens"); tokens && tokens->type == GgufType::array)
    c.vocab_size = static_cast<int64_t>(std::min<uint64_t>(tokens->count, kMaxVocab + 1));
  else if (const TensorView* emb = g.find_tensor("token_embd.weight"); emb && emb->shape.size() == 2)
    c.vocab_size = emb->shape[0];
  c.tie_embeddings = g.find_tensor("output.weight") == nullptr;
  c.attention_bias = g.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.qk_norm = g.find_tensor("blk.0.attn_q_norm.weight") != nullptr;
  if (auto b = g.get_uint("tokenizer.ggml.bos_token_id")) c.bos_token_id = static_cast<int64_t>(*b & 0x7fffffff);
  if (auto e = g.get_uint("tokenizer.ggml.eos_token_id")) c.eos_token_id = static_cast<int64_t>(*e & 0x7fffffff);
  validate(c, source);
  return c;
}

}  // namespace umi

#include "format/model_files.h"

namespace umi {
ModelConfig config_from_files(const ModelFiles& files) {
  if (files.gguf()) return config_from_gguf(*files.gguf());
  if (files.config_json().empty()) throw FormatError(files.path(), "config.json", "missing");
  return config_from_hf_json(files.config_json(), files.config_path());
}
}  // namespace umi
