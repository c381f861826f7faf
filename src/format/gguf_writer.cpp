#include "format/gguf_writer.h"

#include <cstdio>
#include <cstring>
#include <memory>

#include "core/error.h"

namespace umi {

namespace {
constexpr uint64_t kAlignment = 32;

template <class T>
void put(std::vector<std::byte>& b, T v) {
  size_t at = b.size();
  b.resize(at + sizeof v);
  std::memcpy(b.data() + at, &v, sizeof v);
}
void put_string(std::vector<std::byte>& b, const std::string& s) {
  put<uint64_t>(b, s.size());
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  b.insert(b.end(), p, p + s.size());
}
std::vector<std::byte> key(const std::string& k, uint32_t type) {
  std::vector<std::byte> b;
  put_string(b, k);
  put<uint32_t>(b, type);
  return b;
}

// The payload of a value of `type` (no key, no type tag).
void put_payload(std::vector<std::byte>& b, GgufType type, const GgufValue& v) {
  switch (type) {
    case GgufType::u8: case GgufType::i8: case GgufType::boolean: put<uint8_t>(b, static_cast<uint8_t>(v.u)); return;
    case GgufType::u16: case GgufType::i16: put<uint16_t>(b, static_cast<uint16_t>(v.u)); return;
    case GgufType::u32: case GgufType::i32: put<uint32_t>(b, static_cast<uint32_t>(v.u)); return;
    case GgufType::u64: case GgufType::i64: put<uint64_t>(b, v.u); return;
    case GgufType::f32: put<float>(b, static_cast<float>(v.f)); return;
    case GgufType::f64: put<double>(b, v.f); return;
    case GgufType::string: put_string(b, std::string(v.str)); return;
    case GgufType::array:
      put<uint32_t>(b, static_cast<uint32_t>(v.elem_type));
      put<uint64_t>(b, v.count);
      if (v.elem_type == GgufType::string) {
        for (std::string_view s : v.strings) put_string(b, std::string(s));
      } else if (v.elem_type == GgufType::array) {
        for (const GgufValue& item : v.items) put_payload(b, GgufType::array, item);
      } else {
        b.insert(b.end(), v.raw.begin(), v.raw.end());  // numbers stay as stored
      }
      return;
  }
  throw Error("gguf writer: unknown value type");
}
}  // namespace

void GgufWriter::add_value(const std::string& k, const GgufValue& v) {
  kvs_.push_back(key(k, static_cast<uint32_t>(v.type)));
  put_payload(kvs_.back(), v.type, v);
}

void GgufWriter::add_u32(const std::string& k, uint32_t v) { kvs_.push_back(key(k, 4)), put(kvs_.back(), v); }
void GgufWriter::add_f32(const std::string& k, float v) { kvs_.push_back(key(k, 6)), put(kvs_.back(), v); }
void GgufWriter::add_bool(const std::string& k, bool v) { kvs_.push_back(key(k, 7)), put<uint8_t>(kvs_.back(), v); }
void GgufWriter::add_string(const std::string& k, const std::string& v) { kvs_.push_back(key(k, 8)), put_string(kvs_.back(), v); }

void GgufWriter::add_strings(const std::string& k, const std::vector<std::string>& v) {
  kvs_.push_back(key(k, 9));
  put<uint32_t>(kvs_.back(), 8);
  put<uint64_t>(kvs_.back(), v.size());
  for (const auto& s : v) put_string(kvs_.back(), s);
}

void GgufWriter::add_f32s(const std::string& k, const std::vector<float>& v) {
  kvs_.push_back(key(k, 9));
  put<uint32_t>(kvs_.back(), 6);
  put<uint64_t>(kvs_.back(), v.size());
  for (float f : v) put(kvs_.back(), f);
}

void GgufWriter::add_i32s(const std::string& k, const std::vector<int32_t>& v) {
  kvs_.push_back(key(k, 9));
  put<uint32_t>(kvs_.back(), 5);
  put<uint64_t>(kvs_.back(), v.size());
  for (int32_t i : v) put(kvs_.back(), i);
}

void GgufWriter::add_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, RowWriter rows) {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  auto bytes = dtype_bytes(dtype, n);
  if (!bytes) throw InputError("tensor " + name + ": " + std::to_string(n) + " elements are not whole " + std::string(to_string(dtype)) + " blocks");
  data_bytes_ = (data_bytes_ + kAlignment - 1) / kAlignment * kAlignment;
  tensors_.push_back({name, dtype, std::move(shape), std::move(rows), *bytes, data_bytes_});
  data_bytes_ += *bytes;
}

void GgufWriter::write(const std::string& path, const std::function<void(uint64_t, uint64_t)>& progress) const {
  std::vector<std::byte> head;
  put<uint32_t>(head, 0x46554747);
  put<uint32_t>(head, 3);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kvs_.size() + 1);
  std::vector<std::byte> align = key("general.alignment", 4);
  put<uint32_t>(align, kAlignment);
  head.insert(head.end(), align.begin(), align.end());
  for (const auto& kv : kvs_) head.insert(head.end(), kv.begin(), kv.end());
  for (const Tensor& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) put<uint64_t>(head, static_cast<uint64_t>(*it));  // innermost first
    put<uint32_t>(head, ggml_type_id(t.dtype));
    put<uint64_t>(head, t.offset);
  }
  head.resize((head.size() + kAlignment - 1) / kAlignment * kAlignment);

  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), std::fclose);
  if (!f) throw InputError(path + ": cannot create the file");
  auto write_bytes = [&](const void* p, size_t n) {
    if (n && std::fwrite(p, 1, n, f.get()) != n) throw InputError(path + ": write failed (disk full?)");
  };
  write_bytes(head.data(), head.size());
  uint64_t written = 0;
  std::vector<std::byte> chunk;
  const std::byte zeros[kAlignment] = {};
  for (const Tensor& t : tensors_) {
    write_bytes(zeros, t.offset - written);
    written = t.offset;
    int64_t rows = t.shape.size() > 1 ? t.shape[0] : 1;
    uint64_t row_bytes = rows ? t.bytes / static_cast<uint64_t>(rows) : 0;
    int64_t per_chunk = row_bytes ? std::max<int64_t>(1, static_cast<int64_t>((4u << 20) / row_bytes)) : 1;
    for (int64_t r = 0; r < rows; r += per_chunk) {
      int64_t e = std::min(rows, r + per_chunk);
      chunk.resize(static_cast<size_t>(row_bytes) * static_cast<size_t>(e - r));
      t.rows(r, e, chunk.data());
      write_bytes(chunk.data(), chunk.size());
      written += chunk.size();
      if (progress) progress(written, data_bytes_);
    }
  }
  if (std::fflush(f.get()) != 0) throw InputError(path + ": write failed");
}

}  // namespace umi
