#include "support/file_builders.h"

#include <cstring>
#include <fstream>
#include <stdexcept>

#include "format/dtype.h"

namespace umi::test {

namespace {

template <class T>
void put(Bytes& b, T v) {
  size_t at = b.size();
  b.resize(at + sizeof v);
  std::memcpy(b.data() + at, &v, sizeof v);
}

void put_string(Bytes& b, const std::string& s) {
  put<uint64_t>(b, s.size());
  for (char c : s) b.push_back(static_cast<std::byte>(c));
}

Bytes key_and_type(const std::string& key, uint32_t type) {
  Bytes b;
  put_string(b, key);
  put<uint32_t>(b, type);
  return b;
}

}  // namespace

uint64_t ggml_bytes(uint32_t type, uint64_t n) {
  auto dt = dtype_from_ggml(type);
  if (!dt) throw std::invalid_argument("unknown ggml type");
  return dtype_bytes(*dt, n).value_or(0);
}

Bytes pattern_bytes(uint64_t n, uint32_t seed) {
  Bytes b(n);
  uint32_t x = seed * 2654435761u + 12345;
  for (uint64_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    b[i] = static_cast<std::byte>(x >> 24);
  }
  return b;
}

GgufBuilder& GgufBuilder::kv_u32(const std::string& key, uint32_t v) {
  Bytes b = key_and_type(key, 4);
  put(b, v);
  kvs_.push_back(b);
  return *this;
}
GgufBuilder& GgufBuilder::kv_u64(const std::string& key, uint64_t v) {
  Bytes b = key_and_type(key, 10);
  put(b, v);
  kvs_.push_back(b);
  return *this;
}
GgufBuilder& GgufBuilder::kv_f32(const std::string& key, float v) {
  Bytes b = key_and_type(key, 6);
  put(b, v);
  kvs_.push_back(b);
  return *this;
}
GgufBuilder& GgufBuilder::kv_bool(const std::string& key, uint8_t v) {
  Bytes b = key_and_type(key, 7);
  put(b, v);
  kvs_.push_back(b);
  return *this;
}
GgufBuilder& GgufBuilder::kv_string(const std::string& key, const std::string& v) {
  Bytes b = key_and_type(key, 8);
  put_string(b, v);
  kvs_.push_back(b);
  return *this;
}
GgufBuilder& GgufBuilder::kv_string_array(const std::string& key, const std::vector<std::string>& v) {
  Bytes b = key_and_type(key, 9);
  put<uint32_t>(b, 8);
  put<uint64_t>(b, v.size());
  for (const auto& s : v) put_string(b, s);
  kvs_.push_back(b);
  return *this;
}
GgufBuilder& GgufBuilder::kv_f32_array(const std::string& key, const std::vector<float>& v) {
  Bytes b = key_and_type(key, 9);
  put<uint32_t>(b, 6);
  put<uint64_t>(b, v.size());
  for (float f : v) put(b, f);
  kvs_.push_back(b);
  return *this;
}
GgufBuilder& GgufBuilder::kv_raw(const std::string& key, uint32_t type, const Bytes& value) {
  Bytes b = key_and_type(key, type);
  b.insert(b.end(), value.begin(), value.end());
  kvs_.push_back(b);
  return *this;
}

GgufBuilder& GgufBuilder::tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t ggml_type,
                                 std::optional<uint64_t> offset, std::optional<uint64_t> data_bytes) {
  tensors_.push_back({name, std::move(ne), ggml_type, offset, data_bytes});
  return *this;
}

Bytes GgufBuilder::build() const {
  Bytes b;
  put(b, magic);
  put(b, version);
  put<uint64_t>(b, n_tensors_override.value_or(tensors_.size()));
  put<uint64_t>(b, n_kv_override.value_or(kvs_.size()));
  for (const Bytes& kv : kvs_) b.insert(b.end(), kv.begin(), kv.end());
  std::vector<uint64_t> offsets, sizes;
  uint64_t next = 0;
  for (const Tensor& t : tensors_) {
    uint64_t n = 1;
    for (uint64_t d : t.ne) n *= d;
    uint64_t size = t.data_bytes ? *t.data_bytes : (dtype_from_ggml(t.type) ? ggml_bytes(t.type, n) : 0);
    uint64_t off = t.offset.value_or(next);
    offsets.push_back(off);
    sizes.push_back(size);
    next = std::max(next, (off + size + alignment - 1) / alignment * alignment);
    put_string(b, t.name);
    put<uint32_t>(b, static_cast<uint32_t>(t.ne.size()));
    for (uint64_t d : t.ne) put(b, d);
    put(b, t.type);
    put(b, off);
  }
  uint64_t data_start = (b.size() + alignment - 1) / alignment * alignment;
  b.resize(data_start);
  uint64_t end = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) end = std::max(end, offsets[i] + sizes[i]);
  if (end < (1ull << 28)) {  // absurd test offsets are left dangling on purpose
    Bytes data = pattern_bytes(end, 3);
    b.insert(b.end(), data.begin(), data.end());
  }
  return b;
}

Bytes build_safetensors_raw(const std::string& header, const Bytes& data) {
  Bytes b;
  put<uint64_t>(b, header.size());
  for (char c : header) b.push_back(static_cast<std::byte>(c));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

Bytes build_safetensors(const std::vector<StTensor>& tensors, const std::string& metadata_json) {
  std::string header = "{";
  if (!metadata_json.empty()) header += "\"__metadata__\":" + metadata_json;
  uint64_t offset = 0;
  for (const StTensor& t : tensors) {
    uint64_t n = 1;
    std::string shape;
    for (uint64_t d : t.shape) {
      n *= d;
      shape += (shape.empty() ? "" : ",") + std::to_string(d);
    }
    auto dt = dtype_from_safetensors(t.dtype);
    uint64_t bytes = dt ? dtype_bytes(*dt, n).value_or(0) : n;
    if (header.size() > 1) header += ",";
    header += "\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[" + shape + "],\"data_offsets\":[" +
              std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  while ((8 + header.size()) % 8) header += ' ';  // keep data 8-byte aligned, as the writers do
  return build_safetensors_raw(header, pattern_bytes(offset, 5));
}

Bytes tiny_llama_gguf() {
  constexpr uint32_t F32 = 0, F16 = 1, Q8_0 = 8;
  const uint64_t d = 64, ff = 128, vocab = 256, layers = 2, heads = 4, kv_heads = 2, hd = d / heads;
  GgufBuilder g;
  std::vector<std::string> tokens;
  for (int i = 0; i < 256; ++i) tokens.push_back(std::string(1, static_cast<char>(i)));
  g.kv_string("general.architecture", "llama")
      .kv_string("general.name", "umi tiny test model (random weights)")
      .kv_u32("general.alignment", 32)
      .kv_u32("llama.context_length", 512)
      .kv_u32("llama.embedding_length", d)
      .kv_u32("llama.feed_forward_length", ff)
      .kv_u32("llama.block_count", layers)
      .kv_u32("llama.attention.head_count", heads)
      .kv_u32("llama.attention.head_count_kv", kv_heads)
      .kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
      .kv_f32("llama.rope.freq_base", 10000.0f)
      .kv_string("tokenizer.ggml.model", "gpt2")
      .kv_string_array("tokenizer.ggml.tokens", tokens)
      .kv_u32("tokenizer.ggml.bos_token_id", 1)
      .kv_u32("tokenizer.ggml.eos_token_id", 2)
      .kv_string("tokenizer.chat_template", "{% for m in messages %}{{ m.content }}{% endfor %}");
  g.tensor("token_embd.weight", {d, vocab}, F16);
  for (uint64_t l = 0; l < layers; ++l) {
    std::string p = "blk." + std::to_string(l) + ".";
    g.tensor(p + "attn_norm.weight", {d}, F32)
        .tensor(p + "attn_q.weight", {d, heads * hd}, Q8_0)
        .tensor(p + "attn_k.weight", {d, kv_heads * hd}, Q8_0)
        .tensor(p + "attn_v.weight", {d, kv_heads * hd}, Q8_0)
        .tensor(p + "attn_output.weight", {heads * hd, d}, Q8_0)
        .tensor(p + "ffn_norm.weight", {d}, F32)
        .tensor(p + "ffn_gate.weight", {d, ff}, Q8_0)
        .tensor(p + "ffn_up.weight", {d, ff}, Q8_0)
        .tensor(p + "ffn_down.weight", {ff, d}, Q8_0);
  }
  g.tensor("output_norm.weight", {d}, F32);
  return g.build();
}

void write_file(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace umi::test
