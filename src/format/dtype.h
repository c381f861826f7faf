// Element types of tensors in model files: plain floats and integers, and the
// block-quantized GGML types (a block of `block_elems` values stored in
// `block_bytes` bytes, e.g. Q4_0: 32 values in 18 bytes).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace umi {

enum class DType : uint8_t {
  F32, F16, BF16, F64, I8, I16, I32, I64, U8, BOOL,
  Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL, IQ4_XS,
};

struct DTypeInfo {
  std::string_view name;  // lower case, as on the command line: "f16", "q4_k"
  uint32_t block_elems;   // 1 for plain types
  uint32_t block_bytes;
  bool quantized;
};

const DTypeInfo& dtype_info(DType t);
inline std::string_view to_string(DType t) { return dtype_info(t).name; }

// Bytes for n elements; nullopt if n is not a whole number of blocks or the
// product overflows.
std::optional<uint64_t> dtype_bytes(DType t, uint64_t n_elements);

// "f16", "Q4_K", "bf16"... (case-insensitive).
std::optional<DType> dtype_from_name(std::string_view name);
// GGML's numeric type ids (ggml.h enum ggml_type).
std::optional<DType> dtype_from_ggml(uint32_t id);
uint32_t ggml_type_id(DType t);
// The names used in safetensors headers: "F32", "BF16", "I64"...
std::optional<DType> dtype_from_safetensors(std::string_view name);

}  // namespace umi
