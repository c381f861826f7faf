#include "format/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "core/error.h"
#include "memory/system_memory.h"

namespace umi {

MappedFile MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw FormatError(path, "open", std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw FormatError(path, "open", std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw FormatError(path, "open", "not a regular file");
  }
  MappedFile f;
  f.path_ = path;
  f.size_ = static_cast<uint64_t>(st.st_size);
  if (f.size_ > 0) {
    void* p = mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw FormatError(path, "mmap", std::strerror(err));
    }
    f.data_ = p;
  }
  ::close(fd);  // the mapping keeps the file alive
  return f;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (data_) munmap(data_, size_);
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    locked_ = std::exchange(other.locked_, false);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_) munmap(data_, size_);  // also unlocks
}

void MappedFile::advise(Advice advice, uint64_t offset, uint64_t length) const {
  if (!data_ || offset >= size_) return;
  uint64_t page = page_size();
  uint64_t start = offset / page * page;  // madvise wants a page-aligned start
  uint64_t end = (length > size_ - offset) ? size_ : offset + length;
  int flag = MADV_NORMAL;
  switch (advice) {
    case Advice::normal: flag = MADV_NORMAL; break;
    case Advice::sequential: flag = MADV_SEQUENTIAL; break;
    case Advice::random: flag = MADV_RANDOM; break;
    case Advice::willneed: flag = MADV_WILLNEED; break;
    case Advice::dontneed: flag = MADV_DONTNEED; break;
  }
  madvise(static_cast<char*>(data_) + start, end - start, flag);
}

std::string read_small_file(const std::string& path, uint64_t max_bytes) {
  MappedFile f = MappedFile::open(path);
  if (f.size() > max_bytes)
    throw FormatError(path, "", "file is " + std::to_string(f.size()) + " bytes, over the " + std::to_string(max_bytes) +
                                    "-byte limit");
  return {reinterpret_cast<const char*>(f.bytes().data()), f.size()};
}

std::string MappedFile::lock() {
  if (!data_ || locked_) return {};
  if (mlock(data_, size_) != 0) return std::strerror(errno);
  locked_ = true;
  return {};
}

}  // namespace umi
