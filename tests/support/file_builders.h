// Builders for GGUF and safetensors bytes in tests: valid files, and files
// broken in exactly one chosen way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace umi::test {

using Bytes = std::vector<std::byte>;

class GgufBuilder {
 public:
  uint32_t magic = 0x46554747;
  uint32_t version = 3;
  std::optional<uint64_t> n_tensors_override;
  std::optional<uint64_t> n_kv_override;
  uint64_t alignment = 32;  // used to place data; add kv_u32("general.alignment") to declare another

  GgufBuilder& kv_u32(const std::string& key, uint32_t v);
  GgufBuilder& kv_u64(const std::string& key, uint64_t v);
  GgufBuilder& kv_f32(const std::string& key, float v);
  GgufBuilder& kv_bool(const std::string& key, uint8_t v);
  GgufBuilder& kv_string(const std::string& key, const std::string& v);
  GgufBuilder& kv_string_array(const std::string& key, const std::vector<std::string>& v);
  GgufBuilder& kv_f32_array(const std::string& key, const std::vector<float>& v);
  // A key with a raw type id and raw value bytes, for malformed entries.
  GgufBuilder& kv_raw(const std::string& key, uint32_t type, const Bytes& value);

  // ne: innermost dimension first, as GGUF stores it. offset/bytes default
  // to the next aligned slot and the size the type implies.
  GgufBuilder& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t ggml_type,
                      std::optional<uint64_t> offset = {}, std::optional<uint64_t> data_bytes = {});

  Bytes build() const;

 private:
  struct Tensor {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type;
    std::optional<uint64_t> offset;
    std::optional<uint64_t> data_bytes;
  };
  std::vector<Bytes> kvs_;
  std::vector<Tensor> tensors_;
};

// Bytes the given ggml type uses for n elements (n a whole number of blocks).
uint64_t ggml_bytes(uint32_t type, uint64_t n);

// safetensors: u64 header length + header text + data.
Bytes build_safetensors_raw(const std::string& header, const Bytes& data);
struct StTensor {
  std::string name;
  std::string dtype;  // "F32", "BF16", ...
  std::vector<uint64_t> shape;
};
// A valid file with tensors laid out back to back, data a non-zero pattern.
Bytes build_safetensors(const std::vector<StTensor>& tensors, const std::string& metadata_json = "");

// A small valid Llama-shaped GGUF (F32 norms, F16 and Q8_0 matrices, a
// byte-level vocabulary and a chat template) for tests and the README demo.
Bytes tiny_llama_gguf();

void write_file(const std::string& path, const Bytes& bytes);
Bytes pattern_bytes(uint64_t n, uint32_t seed = 1);

}  // namespace umi::test
