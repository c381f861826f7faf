// safetensors reader over a mapped file.
//
// Layout: u64 little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
// then the data buffer; offsets are relative to its start. The header is
// capped at 100 MB (as the reference implementation does) and parsed strictly.
// Tensors outside the buffer, overlapping, or whose byte length does not match
// shape x dtype are errors; uncovered bytes and misaligned tensors are layout
// problems reported as warnings.
#pragma once

#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "format/tensor_view.h"

namespace umi {

inline constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;

struct SafetensorsFile {
  std::string path;
  uint64_t header_bytes = 0;
  uint64_t data_offset = 0;  // absolute offset of the data buffer
  std::vector<TensorView> tensors;  // sorted by name
  std::map<std::string, std::string> metadata;
  std::vector<std::string> warnings;  // layout problems that do not stop loading
};

// Throws FormatError("<path>", field, reason).
SafetensorsFile parse_safetensors(std::span<const std::byte> bytes, std::string_view path, uint32_t file_index = 0);

// Shard file names from a model.safetensors.index.json, in first-use order,
// and the tensor -> shard map. Shard names must be plain file names in the
// same folder (no separators, no "..").
struct SafetensorsIndex {
  std::vector<std::string> shards;
  std::map<std::string, std::string> weight_map;
};
SafetensorsIndex parse_safetensors_index(std::string_view json_text, std::string_view path);

}  // namespace umi
