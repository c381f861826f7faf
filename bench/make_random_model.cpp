// Writes a Hugging Face Llama folder with random bf16 weights of a given
// shape (for speed measurements on realistic sizes; the weights mean nothing).
//   umi_make_random_model OUT_DIR --preset llama-3.2-1b|llama-3-8b [--tokenizer DIR]
#include <cstdio>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/half.h"

namespace {
struct Shape {
  int vocab, d, ff, layers, heads, kv_heads, ctx;
  bool tied;
  double theta;
};

void write_folder(const std::string& dir, const Shape& s) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  const int hd = s.d / s.heads;
  std::vector<std::pair<std::string, std::vector<int64_t>>> tensors;
  tensors.push_back({"model.embed_tokens.weight", {s.vocab, s.d}});
  for (int l = 0; l < s.layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    tensors.push_back({p + "input_layernorm.weight", {s.d}});
    tensors.push_back({p + "post_attention_layernorm.weight", {s.d}});
    tensors.push_back({p + "self_attn.q_proj.weight", {s.heads * hd, s.d}});
    tensors.push_back({p + "self_attn.k_proj.weight", {s.kv_heads * hd, s.d}});
    tensors.push_back({p + "self_attn.v_proj.weight", {s.kv_heads * hd, s.d}});
    tensors.push_back({p + "self_attn.o_proj.weight", {s.d, s.heads * hd}});
    tensors.push_back({p + "mlp.gate_proj.weight", {s.ff, s.d}});
    tensors.push_back({p + "mlp.up_proj.weight", {s.ff, s.d}});
    tensors.push_back({p + "mlp.down_proj.weight", {s.d, s.ff}});
  }
  tensors.push_back({"model.norm.weight", {s.d}});
  if (!s.tied) tensors.push_back({"lm_head.weight", {s.vocab, s.d}});
  std::string header = "{";
  uint64_t offset = 0;
  for (auto& [name, shape] : tensors) {
    uint64_t n = 1;
    std::string dims;
    for (int64_t x : shape) {
      n *= static_cast<uint64_t>(x);
      dims += (dims.empty() ? "" : ",") + std::to_string(x);
    }
    if (header.size() > 1) header += ",";
    header += "\"" + name + "\":{\"dtype\":\"BF16\",\"shape\":[" + dims + "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + 2 * n) + "]}";
    offset += 2 * n;
  }
  header += "}";
  while ((8 + header.size()) % 8) header += ' ';
  std::ofstream out(dir + "/model.safetensors", std::ios::binary);
  uint64_t hl = header.size();
  out.write(reinterpret_cast<const char*>(&hl), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  // Uniform in [-a, a] with the standard deviation 0.02 of a normal init:
  // xorshift is ~10x faster than mt19937 + normal_distribution, which made an
  // 8B-shaped folder take 4 minutes.
  uint64_t state = 0x9E3779B97F4A7C15ull;
  const float a = 0.02f * std::sqrt(3.0f);
  auto uniform = [&]() {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    return (static_cast<float>(state >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f) * a;
  };
  std::vector<uint16_t> chunk(1 << 20);
  for (auto& [name, shape] : tensors) {
    uint64_t n = 1;
    for (int64_t x : shape) n *= static_cast<uint64_t>(x);
    bool norm = shape.size() == 1;
    for (uint64_t done = 0; done < n;) {
      size_t m = static_cast<size_t>(std::min<uint64_t>(chunk.size(), n - done));
      for (size_t i = 0; i < m; ++i) chunk[i] = umi::cpu::f32_to_bf16(norm ? 1.0f : uniform());
      out.write(reinterpret_cast<const char*>(chunk.data()), static_cast<std::streamsize>(2 * m));
      done += m;
    }
  }
  std::ofstream cfg(dir + "/config.json");
  cfg << "{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":" << s.vocab << ",\"hidden_size\":" << s.d
      << ",\"intermediate_size\":" << s.ff << ",\"num_hidden_layers\":" << s.layers << ",\"num_attention_heads\":" << s.heads
      << ",\"num_key_value_heads\":" << s.kv_heads << ",\"max_position_embeddings\":" << s.ctx
      << ",\"rms_norm_eps\":1e-05,\"rope_theta\":" << s.theta << ",\"tie_word_embeddings\":" << (s.tied ? "true" : "false")
      << ",\"torch_dtype\":\"bfloat16\"}\n";
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || std::strcmp(argv[2], "--preset") != 0) {
    std::fprintf(stderr, "usage: umi_make_random_model OUT_DIR --preset llama-3.2-1b|llama-3-8b|tiny-32k [--tokenizer DIR]\n");
    return 2;
  }
  std::string preset = argv[3];
  Shape s;
  if (preset == "llama-3.2-1b") s = {128256, 2048, 8192, 16, 32, 8, 131072, true, 500000.0};
  else if (preset == "llama-3-8b") s = {128256, 4096, 14336, 32, 32, 8, 131072, false, 500000.0};  // Llama 3.1 8B context
  else if (preset == "tiny-32k") s = {128256, 256, 768, 4, 8, 4, 65536, true, 500000.0};
  else {
    std::fprintf(stderr, "unknown preset %s\n", preset.c_str());
    return 2;
  }
  write_folder(argv[1], s);
  if (argc >= 6 && std::strcmp(argv[4], "--tokenizer") == 0)
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      std::filesystem::copy_file(std::filesystem::path(argv[5]) / f, std::filesystem::path(argv[1]) / f,
                                 std::filesystem::copy_options::overwrite_existing);
  return 0;
}
