// GGUF (v2 and v3) reader over a mapped file.
//
// Layout (ggml docs/gguf.md): magic "GGUF", u32 version, u64 tensor count,
// u64 metadata count, metadata key/values, tensor infos, padding to
// `general.alignment` (default 32), tensor data. Everything here is read
// through a bounds-checked cursor and validated against the file before use:
// counts against the bytes that could hold them, strings against the file,
// tensor extents, overlaps, alignment and shape x dtype sizes.
//
// The result holds views into the bytes it was given; they must outlive it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "format/tensor_view.h"

namespace umi {

enum class GgufType : uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7,
  string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12,
};
std::string_view to_string(GgufType t);

struct GgufValue {
  GgufType type = GgufType::u8;
  // Scalars: integers widened to u/i (whichever can hold the value), floats to f.
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  std::string_view str;
  // Arrays: element type and count; numeric elements stay in place in `raw`.
  GgufType elem_type = GgufType::u8;
  uint64_t count = 0;
  std::span<const std::byte> raw;
  std::vector<std::string_view> strings;  // arrays of strings
  std::vector<GgufValue> items;           // arrays of arrays

  bool is_integer() const;
  bool is_float() const { return type == GgufType::f32 || type == GgufType::f64; }
  // Numeric element i of an array of numbers, widened (no bounds check beyond count).
  double number_at(uint64_t index) const;
  int64_t int_at(uint64_t index) const;  // floats saturate; NaN is 0
};

struct GgufFile {
  std::string path;
  uint32_t version = 0;
  uint64_t alignment = 32;
  uint64_t data_offset = 0;  // absolute offset of the tensor data section
  std::vector<std::pair<std::string_view, GgufValue>> metadata;  // in file order
  std::vector<TensorView> tensors;                                // in file order

  const GgufValue* find(std::string_view key) const;
  std::optional<uint64_t> get_uint(std::string_view key) const;  // any non-negative integer type
  std::optional<double> get_float(std::string_view key) const;   // float or integer type
  std::optional<std::string_view> get_string(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  const TensorView* find_tensor(std::string_view name) const;

 private:
  friend GgufFile parse_gguf(std::span<const std::byte>, std::string_view);
  std::unordered_map<std::string_view, size_t> key_index_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

// Throws FormatError("<path>", field, reason) on anything malformed.
GgufFile parse_gguf(std::span<const std::byte> bytes, std::string_view path);

}  // namespace umi
