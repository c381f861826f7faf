// A bounds-checked little-endian cursor over untrusted bytes. Every read
// checks the remaining length first and throws FormatError naming the file,
// the field being read and the offset; nothing is ever read out of bounds.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "core/error.h"

namespace umi {

static_assert(std::endian::native == std::endian::little, "umi reads little-endian files in place");

class ByteReader {
 public:
  ByteReader(std::span<const std::byte> bytes, std::string_view file) : bytes_(bytes), file_(file) {}

  uint64_t offset() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }
  std::string_view file() const { return file_; }

  template <class T>
  T read(std::string_view field) {
    static_assert(std::is_trivially_copyable_v<T>);
    require(sizeof(T), field);
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  // A view of the next n bytes.
  std::span<const std::byte> take(uint64_t n, std::string_view field) {
    require(n, field);
    auto s = bytes_.subspan(pos_, n);
    pos_ += n;
    return s;
  }

  // A GGUF string: u64 length then bytes (not NUL-terminated).
  std::string_view read_string(std::string_view field, uint64_t max_len) {
    uint64_t n = read<uint64_t>(field);
    if (n > max_len)
      fail(field, "string length " + std::to_string(n) + " is over the " + std::to_string(max_len) + " limit");
    auto s = take(n, field);
    return {reinterpret_cast<const char*>(s.data()), s.size()};
  }

  void skip(uint64_t n, std::string_view field) { take(n, field); }

  [[noreturn]] void fail(std::string_view field, std::string_view reason) const {
    throw FormatError(file_, field, std::string(reason) + " (at byte " + std::to_string(pos_) + ")");
  }

 private:
  void require(uint64_t n, std::string_view field) const {
    if (n > remaining())
      fail(field, "truncated: needs " + std::to_string(n) + " bytes, " + std::to_string(remaining()) +
                      " left in a " + std::to_string(bytes_.size()) + "-byte file");
  }

  std::span<const std::byte> bytes_;
  std::string_view file_;
  uint64_t pos_ = 0;
};

}  // namespace umi
