#include "format/gguf.h"

#include <cstring>
#include <limits>
#include <unordered_set>

#include "core/checked.h"
#include "core/error.h"
#include "format/byte_reader.h"

namespace umi {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS
constexpr uint64_t kMaxKeyLength = 65535;
constexpr uint64_t kMaxNameLength = 4096;
constexpr int kMaxArrayDepth = 4;
// The fewest bytes a metadata entry (u64 key length, u32 type, 1-byte value)
// and a tensor info (u64 name length, u32 dims, one u64 dim, u32 type, u64
// offset) can occupy: counts larger than the file could hold are refused before
// anything is reserved.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

uint64_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::u8: case GgufType::i8: case GgufType::boolean: return 1;
    case GgufType::u16: case GgufType::i16: return 2;
    case GgufType::u32: case GgufType::i32: case GgufType::f32: return 4;
    case GgufType::u64: case GgufType::i64: case GgufType::f64: return 8;
    default: return 0;
  }
}

bool valid_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::f64); }

class Parser {
 public:
  Parser(std::span<const std::byte> bytes, std::string_view path) : r_(bytes, path), path_(path) {}

  GgufFile run() {
    GgufFile out;
    out.path = std::string(path_);
    read_header(out);
    read_metadata(out);
    read_tensor_infos(out);
    place_tensors(out);
    return out;
  }

 private:
  void read_header(GgufFile& out) {
    uint32_t magic = r_.read<uint32_t>("magic");
    if (magic != kMagic) r_.fail("magic", "not a GGUF file (magic is not \"GGUF\")");
    out.version = r_.read<uint32_t>("version");
    if (out.version == 1) r_.fail("version", "GGUF version 1 is not supported (re-convert the model)");
    if (out.version != 2 && out.version != 3) {
      std::string why = "unsupported GGUF version " + std::to_string(out.version);
      if ((out.version & 0xffff) == 0) why += " (a big-endian file?)";
      r_.fail("version", why);
    }
    n_tensors_ = r_.read<uint64_t>("n_tensors");
    n_kv_ = r_.read<uint64_t>("n_kv");
    if (n_kv_ > r_.remaining() / kMinKvBytes)
      r_.fail("n_kv", std::to_string(n_kv_) + " metadata entries cannot fit in the file");
    if (n_tensors_ > r_.remaining() / kMinTensorInfoBytes)
      r_.fail("n_tensors", std::to_string(n_tensors_) + " tensors cannot fit in the file");
  }

  void read_metadata(GgufFile& out) {
    out.metadata.reserve(n_kv_);
    for (uint64_t k = 0; k < n_kv_; ++k) {
      std::string field = "metadata[" + std::to_string(k) + "]";
      std::string_view key = r_.read_string(field + ".key", kMaxKeyLength);
      if (key.empty()) r_.fail(field + ".key", "empty key");
      field = "metadata '" + std::string(key) + "'";
      uint32_t type = r_.read<uint32_t>(field + " type");
      if (!valid_type(type)) r_.fail(field, "unknown value type " + std::to_string(type));
      GgufValue v = read_value(static_cast<GgufType>(type), field, 0);
      if (!keys_.insert(key).second) r_.fail(field, "duplicate key");
      out.metadata.emplace_back(key, std::move(v));
    }
    const GgufValue* a = nullptr;
    for (const auto& [k, v] : out.metadata)
      if (k == "general.alignment") a = &v;
    if (a) {
      if (a->type != GgufType::u32) r_.fail("general.alignment", "must be a u32, is " + std::string(to_string(a->type)));
      if (!is_power_of_two(a->u)) r_.fail("general.alignment", std::to_string(a->u) + " is not a power of two");
      out.alignment = a->u;
    }
  }

  GgufValue read_value(GgufType type, const std::string& field, int depth) {
    GgufValue v;
    v.type = type;
    switch (type) {
      case GgufType::u8: set_uint(v, r_.read<uint8_t>(field)); break;
      case GgufType::u16: set_uint(v, r_.read<uint16_t>(field)); break;
      case GgufType::u32: set_uint(v, r_.read<uint32_t>(field)); break;
      case GgufType::u64: set_uint(v, r_.read<uint64_t>(field)); break;
      case GgufType::i8: set_int(v, r_.read<int8_t>(field)); break;
      case GgufType::i16: set_int(v, r_.read<int16_t>(field)); break;
      case GgufType::i32: set_int(v, r_.read<int32_t>(field)); break;
      case GgufType::i64: set_int(v, r_.read<int64_t>(field)); break;
      case GgufType::f32: v.f = r_.read<float>(field); break;
      case GgufType::f64: v.f = r_.read<double>(field); break;
      case GgufType::boolean: {
        uint8_t b = r_.read<uint8_t>(field);
        if (b > 1) r_.fail(field, "boolean value " + std::to_string(b) + " is neither 0 nor 1");
        v.u = b;
        v.i = b;
        break;
      }
      case GgufType::string: v.str = r_.read_string(field, r_.remaining()); break;
      case GgufType::array: read_array(v, field, depth); break;
    }
    return v;
  }

  void read_array(GgufValue& v, const std::string& field, int depth) {
    if (depth >= kMaxArrayDepth) r_.fail(field, "arrays nested deeper than " + std::to_string(kMaxArrayDepth));
    uint32_t elem = r_.read<uint32_t>(field + " element type");
    if (!valid_type(elem)) r_.fail(field, "unknown array element type " + std::to_string(elem));
    v.elem_type = static_cast<GgufType>(elem);
    v.count = r_.read<uint64_t>(field + " count");
    uint64_t min_elem = v.elem_type == GgufType::string  ? 8
                        : v.elem_type == GgufType::array ? 12
                                                         : scalar_size(v.elem_type);
    if (v.count > r_.remaining() / min_elem)
      r_.fail(field, "array of " + std::to_string(v.count) + " elements cannot fit in the file");
    if (v.elem_type == GgufType::string) {
      v.strings.reserve(v.count);
      for (uint64_t j = 0; j < v.count; ++j) v.strings.push_back(r_.read_string(field, r_.remaining()));
    } else if (v.elem_type == GgufType::array) {
      v.items.reserve(v.count);
      for (uint64_t j = 0; j < v.count; ++j) v.items.push_back(read_value(GgufType::array, field, depth + 1));
    } else {
      v.raw = r_.take(v.count * min_elem, field);
      if (v.elem_type == GgufType::boolean)
        for (std::byte b : v.raw)
          if (static_cast<uint8_t>(b) > 1) r_.fail(field, "boolean array element is neither 0 nor 1");
    }
  }

  static void set_uint(GgufValue& v, uint64_t x) {
    v.u = x;
    v.i = static_cast<int64_t>(x);
  }
  static void set_int(GgufValue& v, int64_t x) {
    v.i = x;
    v.u = static_cast<uint64_t>(x);
  }

  void read_tensor_infos(GgufFile& out) {
    out.tensors.reserve(n_tensors_);
    offsets_.reserve(n_tensors_);
    for (uint64_t t = 0; t < n_tensors_; ++t) {
      std::string field = "tensor[" + std::to_string(t) + "]";
      TensorView tv;
      tv.name = std::string(r_.read_string(field + ".name", kMaxNameLength));
      if (tv.name.empty()) r_.fail(field + ".name", "empty tensor name");
      field = "tensor '" + tv.name + "'";
      uint32_t n_dims = r_.read<uint32_t>(field + " n_dims");
      if (n_dims == 0 || n_dims > kMaxDims)
        r_.fail(field, "n_dims " + std::to_string(n_dims) + " is not in 1.." + std::to_string(kMaxDims));
      uint64_t ne[kMaxDims] = {1, 1, 1, 1};
      uint64_t n_elements = 1;
      for (uint32_t d = 0; d < n_dims; ++d) {
        ne[d] = r_.read<uint64_t>(field + " dims");
        if (ne[d] == 0 || ne[d] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          r_.fail(field, "dimension " + std::to_string(d) + " is " + std::to_string(static_cast<int64_t>(ne[d])));
        auto n = checked_mul(n_elements, ne[d]);
        if (!n || *n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          r_.fail(field, "element count overflows");
        n_elements = *n;
      }
      uint32_t type_id = r_.read<uint32_t>(field + " type");
      auto dtype = dtype_from_ggml(type_id);
      if (!dtype) r_.fail(field, "unsupported ggml type " + std::to_string(type_id));
      tv.dtype = *dtype;
      const DTypeInfo& info = dtype_info(tv.dtype);
      if (ne[0] % info.block_elems != 0)
        r_.fail(field, "row length " + std::to_string(ne[0]) + " is not a multiple of the " +
                           std::string(info.name) + " block size " + std::to_string(info.block_elems));
      auto nbytes = dtype_bytes(tv.dtype, n_elements);
      if (!nbytes) r_.fail(field, "byte size overflows");
      tv.nbytes = *nbytes;
      for (uint32_t d = n_dims; d-- > 0;) tv.shape.push_back(static_cast<int64_t>(ne[d]));
      uint64_t offset = r_.read<uint64_t>(field + " offset");
      offsets_.push_back(offset);
      if (!names_.insert(tv.name).second) r_.fail(field, "duplicate tensor name");
      out.tensors.push_back(std::move(tv));
    }
  }

  void place_tensors(GgufFile& out) {
    auto data = checked_align_up(r_.offset(), out.alignment);
    uint64_t file_size = r_.offset() + r_.remaining();
    if (!data || (*data > file_size && !out.tensors.empty()))
      throw FormatError(path_, "data section", "starts past the end of the file");
    out.data_offset = *data;
    std::vector<const TensorView*> by_offset;
    by_offset.reserve(out.tensors.size());
    for (size_t t = 0; t < out.tensors.size(); ++t) {
      TensorView& tv = out.tensors[t];
      std::string field = "tensor '" + tv.name + "'";
      uint64_t rel = offsets_[t];
      if (rel % out.alignment != 0)
        throw FormatError(path_, field, "offset " + std::to_string(rel) + " is not a multiple of the alignment " +
                                            std::to_string(out.alignment));
      auto start = checked_add(out.data_offset, rel);
      auto end = start ? checked_add(*start, tv.nbytes) : std::nullopt;
      if (!end || *end > file_size)
        throw FormatError(path_, field,
                          "data [" + std::to_string(rel) + ", +" + std::to_string(tv.nbytes) +
                              ") lies outside the file (" + std::to_string(file_size) + " bytes; " +
                              std::string(to_string(tv.dtype)) + " " + tv.shape_string() + ")");
      tv.file_offset = *start;
      by_offset.push_back(&tv);
    }
    check_no_overlap(by_offset, path_);
  }

  ByteReader r_;
  std::string_view path_;
  uint64_t n_tensors_ = 0;
  uint64_t n_kv_ = 0;
  std::vector<uint64_t> offsets_;
  std::unordered_set<std::string_view> keys_;
  std::unordered_set<std::string> names_;
};

}  // namespace

std::string_view to_string(GgufType t) {
  switch (t) {
    case GgufType::u8: return "u8";
    case GgufType::i8: return "i8";
    case GgufType::u16: return "u16";
    case GgufType::i16: return "i16";
    case GgufType::u32: return "u32";
    case GgufType::i32: return "i32";
    case GgufType::f32: return "f32";
    case GgufType::boolean: return "bool";
    case GgufType::string: return "string";
    case GgufType::array: return "array";
    case GgufType::u64: return "u64";
    case GgufType::i64: return "i64";
    case GgufType::f64: return "f64";
  }
  return "?";
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::u8: case GgufType::i8: case GgufType::u16: case GgufType::i16:
    case GgufType::u32: case GgufType::i32: case GgufType::u64: case GgufType::i64: return true;
    default: return false;
  }
}

double GgufValue::number_at(uint64_t index) const {
  const std::byte* p = raw.data() + index * scalar_size(elem_type);
  auto load = [p]<class T>(T) {
    T x;
    std::memcpy(&x, p, sizeof x);
    return x;
  };
  switch (elem_type) {
    case GgufType::u8: case GgufType::boolean: return load(uint8_t{});
    case GgufType::i8: return load(int8_t{});
    case GgufType::u16: return load(uint16_t{});
    case GgufType::i16: return load(int16_t{});
    case GgufType::u32: return load(uint32_t{});
    case GgufType::i32: return load(int32_t{});
    case GgufType::f32: return load(float{});
    case GgufType::u64: return static_cast<double>(load(uint64_t{}));
    case GgufType::i64: return static_cast<double>(load(int64_t{}));
    case GgufType::f64: return load(double{});
    default: return 0;
  }
}

int64_t GgufValue::int_at(uint64_t index) const {
  const std::byte* p = raw.data() + index * scalar_size(elem_type);
  auto load = [p]<class T>(T) {
    T x;
    std::memcpy(&x, p, sizeof x);
    return static_cast<int64_t>(x);
  };
  switch (elem_type) {
    case GgufType::u8: case GgufType::boolean: return load(uint8_t{});
    case GgufType::i8: return load(int8_t{});
    case GgufType::u16: return load(uint16_t{});
    case GgufType::i16: return load(int16_t{});
    case GgufType::u32: return load(uint32_t{});
    case GgufType::i32: return load(int32_t{});
    case GgufType::u64: return load(uint64_t{});
    case GgufType::i64: return load(int64_t{});
    default: {
      // Floats: saturate rather than hit the undefined conversion of an
      // out-of-range or NaN value.
      double d = number_at(index);
      if (!(d == d)) return 0;
      if (d >= 9.2233720368547758e18) return INT64_MAX;
      if (d <= -9.2233720368547758e18) return INT64_MIN;
      return static_cast<int64_t>(d);
    }
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = key_index_.find(key);
  return it == key_index_.end() ? nullptr : &metadata[it->second].second;
}

std::optional<uint64_t> GgufFile::get_uint(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v || !v->is_integer()) return std::nullopt;
  bool is_signed = v->type == GgufType::i8 || v->type == GgufType::i16 || v->type == GgufType::i32 ||
                   v->type == GgufType::i64;
  if (is_signed && v->i < 0) return std::nullopt;
  return v->u;
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->is_float()) return v->f;
  if (v->is_integer()) return static_cast<double>(v->i);
  return std::nullopt;
}

std::optional<std::string_view> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v || v->type != GgufType::string) return std::nullopt;
  return v->str;
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v || v->type != GgufType::boolean) return std::nullopt;
  return v->u != 0;
}

const TensorView* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors[it->second];
}

GgufFile parse_gguf(std::span<const std::byte> bytes, std::string_view path) {
  GgufFile f = Parser(bytes, path).run();
  for (size_t i = 0; i < f.metadata.size(); ++i) f.key_index_.emplace(f.metadata[i].first, i);
  for (size_t i = 0; i < f.tensors.size(); ++i) f.tensor_index_.emplace(f.tensors[i].name, i);
  for (TensorView& tv : f.tensors) tv.data = bytes.data() + tv.file_offset;
  return f;
}

}  // namespace umi
