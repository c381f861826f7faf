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

namespace {
// The file mapped read-only at an address aligned to 2 MiB. Where the page
// cache holds a file in large folios (ext4 and xfs on recent Linux), the
// kernel can then map each 2 MiB of it with one page-table entry instead of
// 512 (smaller page tables; decode measured the same on the development VM,
// session 12). Elsewhere the alignment is harmless. A PROT_NONE reservation
// 2 MiB longer than the file finds the address; the file goes over its
// aligned part (MAP_FIXED) and the slack is given back.
void* map_aligned(int fd, uint64_t size) {
  constexpr uint64_t kAlign = uint64_t{2} << 20;
  const auto anywhere = [&] { return mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0); };
  if (size < kAlign) return anywhere();
  void* reserved = mmap(nullptr, size + kAlign, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (reserved == MAP_FAILED) return anywhere();
  const uintptr_t start = reinterpret_cast<uintptr_t>(reserved);
  const uintptr_t at = (start + kAlign - 1) / kAlign * kAlign;
  void* p = mmap(reinterpret_cast<void*>(at), size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED) {
    munmap(reserved, size + kAlign);
    return anywhere();
  }
  advise_huge_pages(p, size);  // Linux: readahead then fills large folios
  const uint64_t page = page_size();
  const uintptr_t end = (at + size + page - 1) / page * page;
  if (at > start) munmap(reserved, at - start);
  if (start + size + kAlign > end) munmap(reinterpret_cast<void*>(end), start + size + kAlign - end);
  return p;
}
}  // namespace

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
    void* p = map_aligned(fd, f.size_);
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
