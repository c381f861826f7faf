#include "format/safetensors.h"

#include <algorithm>
#include <limits>
#include <set>

#include "core/checked.h"
#include "core/error.h"
#include "format/byte_reader.h"
#include "format/json_strict.h"

namespace umi {

using nlohmann::json;

namespace {

TensorView read_entry(const std::string& name, const json& entry, std::string_view path, uint64_t data_size) {
  std::string field = "tensor '" + name + "'";
  if (!entry.is_object()) throw FormatError(path, field, "entry is not an object");
  auto dtype_it = entry.find("dtype");
  auto shape_it = entry.find("shape");
  auto offsets_it = entry.find("data_offsets");
  if (dtype_it == entry.end() || !dtype_it->is_string()) throw FormatError(path, field, "missing string 'dtype'");
  if (shape_it == entry.end() || !shape_it->is_array()) throw FormatError(path, field, "missing array 'shape'");
  if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2)
    throw FormatError(path, field, "'data_offsets' must be [begin, end]");

  TensorView tv;
  tv.name = name;
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  auto dtype = dtype_from_safetensors(dtype_name);
  if (!dtype) throw FormatError(path, field, "unsupported dtype \"" + dtype_name.substr(0, 32) + "\"");
  tv.dtype = *dtype;

  uint64_t n_elements = 1;
  for (const json& d : *shape_it) {
    if (!d.is_number_unsigned()) throw FormatError(path, field, "shape entries must be non-negative integers");
    uint64_t dim = d.get<uint64_t>();
    auto n = checked_mul(n_elements, dim);
    if (!n || *n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw FormatError(path, field, "element count overflows");
    n_elements = *n;
    tv.shape.push_back(static_cast<int64_t>(dim));
  }
  for (const json& o : *offsets_it)
    if (!o.is_number_unsigned()) throw FormatError(path, field, "data_offsets must be non-negative integers");
  uint64_t begin = (*offsets_it)[0].get<uint64_t>();
  uint64_t end = (*offsets_it)[1].get<uint64_t>();
  if (begin > end) throw FormatError(path, field, "data_offsets begin " + std::to_string(begin) + " > end " + std::to_string(end));
  if (end > data_size)
    throw FormatError(path, field, "data_offsets end " + std::to_string(end) + " lies outside the " +
                                       std::to_string(data_size) + "-byte data buffer");
  auto nbytes = dtype_bytes(tv.dtype, n_elements);
  if (!nbytes || *nbytes != end - begin)
    throw FormatError(path, field, std::string(to_string(tv.dtype)) + " " + tv.shape_string() + " needs " +
                                       (nbytes ? std::to_string(*nbytes) : std::string("too many")) +
                                       " bytes but data_offsets span " + std::to_string(end - begin));
  tv.nbytes = end - begin;
  tv.file_offset = begin;  // made absolute by the caller
  return tv;
}

}  // namespace

SafetensorsFile parse_safetensors(std::span<const std::byte> bytes, std::string_view path, uint32_t file_index) {
  ByteReader r(bytes, path);
  SafetensorsFile out;
  out.path = std::string(path);
  out.header_bytes = r.read<uint64_t>("header length");
  if (out.header_bytes > kSafetensorsMaxHeader)
    r.fail("header length", std::to_string(out.header_bytes) + " bytes is over the 100 MB limit");
  if (out.header_bytes > r.remaining())
    r.fail("header length", std::to_string(out.header_bytes) + " bytes is larger than the file");
  auto header = r.take(out.header_bytes, "header");
  out.data_offset = r.offset();
  uint64_t data_size = r.remaining();

  json root = parse_json_strict({reinterpret_cast<const char*>(header.data()), header.size()}, path, "header");
  if (!root.is_object()) throw FormatError(path, "header", "is not a JSON object");

  std::vector<const TensorView*> by_offset;
  out.tensors.reserve(root.size());
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) throw FormatError(path, "__metadata__", "is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) throw FormatError(path, "__metadata__." + m.key(), "value is not a string");
        out.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    TensorView tv = read_entry(it.key(), *it, path, data_size);
    tv.file_offset += out.data_offset;
    tv.data = bytes.data() + tv.file_offset;
    tv.file_index = file_index;
    out.tensors.push_back(std::move(tv));
  }
  for (const TensorView& tv : out.tensors) by_offset.push_back(&tv);
  check_no_overlap(by_offset, path);

  // Layout problems that do not make the file unreadable.
  uint64_t covered_to = out.data_offset;
  for (const TensorView* tv : by_offset) {
    if (tv->file_offset > covered_to)
      out.warnings.push_back("bytes " + std::to_string(covered_to) + ".." + std::to_string(tv->file_offset) +
                             " before tensor '" + tv->name + "' belong to no tensor");
    covered_to = std::max(covered_to, tv->file_offset + tv->nbytes);
    uint32_t elem = dtype_info(tv->dtype).block_bytes;
    if (tv->file_offset % elem != 0)
      out.warnings.push_back("tensor '" + tv->name + "' is not aligned to its " + std::to_string(elem) +
                             "-byte element size");
  }
  if (covered_to < bytes.size())
    out.warnings.push_back(std::to_string(bytes.size() - covered_to) + " trailing bytes belong to no tensor");
  return out;
}

SafetensorsIndex parse_safetensors_index(std::string_view json_text, std::string_view path) {
  json root = parse_json_strict(json_text, path, "index");
  if (!root.is_object()) throw FormatError(path, "index", "is not a JSON object");
  auto wm = root.find("weight_map");
  if (wm == root.end() || !wm->is_object()) throw FormatError(path, "weight_map", "missing or not an object");
  SafetensorsIndex out;
  std::set<std::string> seen;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it->is_string()) throw FormatError(path, "weight_map." + it.key(), "shard name is not a string");
    std::string shard = it->get<std::string>();
    bool plain = !shard.empty() && shard != "." && shard != ".." && shard.find('/') == std::string::npos &&
                 shard.find('\\') == std::string::npos && shard.find('\0') == std::string::npos;
    if (!plain)
      throw FormatError(path, "weight_map." + it.key(), "shard \"" + shard.substr(0, 100) + "\" is not a plain file name");
    if (seen.insert(shard).second) out.shards.push_back(shard);
    out.weight_map[it.key()] = shard;
  }
  if (out.shards.empty()) throw FormatError(path, "weight_map", "is empty");
  return out;
}

}  // namespace umi
