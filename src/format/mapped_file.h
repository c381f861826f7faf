// A read-only memory mapping of a whole file (RAII).
//
// Model weights are used in place from this mapping: nothing is read into
// heap memory, the kernel pages data in when a kernel touches it, and clean
// pages can be dropped under pressure at no cost.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace umi {

enum class Advice { normal, sequential, random, willneed, dontneed };

class MappedFile {
 public:
  MappedFile() = default;
  // Throws FormatError("<path>", "open", reason) if the file cannot be opened
  // or mapped. An empty file maps to an empty span.
  static MappedFile open(const std::string& path);

  MappedFile(MappedFile&& other) noexcept { *this = std::move(other); }
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(data_), size_}; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Paging hints for a byte range (whole file by default). Best effort: a
  // platform without the hint ignores it.
  void advise(Advice advice, uint64_t offset = 0, uint64_t length = UINT64_MAX) const;

  // Pins the mapping in RAM. Returns an empty string on success, else why not
  // (typically RLIMIT_MEMLOCK).
  std::string lock();
  bool locked() const { return locked_; }

 private:
  std::string path_;
  void* data_ = nullptr;
  uint64_t size_ = 0;
  bool locked_ = false;
};

// A whole (small) file as text: configs, tokenizer files, templates. Refuses
// files over `max_bytes` with FormatError rather than reading them.
std::string read_small_file(const std::string& path, uint64_t max_bytes = 256ull << 20);

}  // namespace umi
