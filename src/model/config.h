// A decoder-only transformer's hyper-parameters, whichever file they came
// from (Hugging Face config.json or GGUF metadata).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "format/dtype.h"

namespace umi {

struct GgufFile;

enum class Arch { llama, mistral, qwen2, qwen3, unknown };
std::string_view to_string(Arch a);
// "llama, mistral, qwen2, qwen3": for errors that list what is supported.
std::string supported_architectures();

struct RopeScaling {
  enum class Type { none, linear, llama3 } type = Type::none;
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_context = 0;   // llama3: original_max_position_embeddings
};

struct ModelConfig {
  Arch arch = Arch::unknown;
  std::string arch_name;  // as the file spells it ("LlamaForCausalLM", "qwen3")
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_context = 0;
  double rms_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_embeddings = false;
  bool attention_bias = false;  // q/k/v projections carry a bias (Qwen2)
  bool qk_norm = false;         // RMSNorm on q and k per head (Qwen3)
  std::optional<DType> weight_dtype;  // torch_dtype, when the config says
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> eos_token_id;

  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
  bool supported() const { return arch != Arch::unknown; }
  // Throws InputError naming the architecture and listing the supported ones.
  void require_supported(std::string_view source) const;
};

// Rotary frequency i (of head_dim / 2) with the config's scaling applied:
// linear divides every frequency; Llama 3 divides low frequencies, keeps high
// ones and blends the band between by wavelength.
double rope_frequency(const ModelConfig& c, int64_t i, bool scaled = true);

// Both throw FormatError("<source>", field, reason) for missing or
// out-of-range values. An unknown architecture is not an error here (inspect
// still shows it); require_supported() is.
ModelConfig config_from_hf_json(std::string_view json_text, std::string_view source);
ModelConfig config_from_gguf(const GgufFile& gguf);

}  // namespace umi

namespace umi {
class ModelFiles;
// The config of an opened model: GGUF metadata or the folder's config.json.
// Throws FormatError if the model has none (a lone safetensors file).
ModelConfig config_from_files(const ModelFiles& files);
}  // namespace umi
