#include "memory/system_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#if defined(__APPLE__)
#include <mach/mach.h>
#include <sys/sysctl.h>
#endif

namespace umi {

uint64_t page_size() {
  long p = sysconf(_SC_PAGESIZE);
  return p > 0 ? static_cast<uint64_t>(p) : 4096;
}

uint64_t physical_memory_bytes() {
#if defined(__APPLE__)
  uint64_t mem = 0;
  size_t len = sizeof mem;
  if (sysctlbyname("hw.memsize", &mem, &len, nullptr, 0) == 0) return mem;
  return 0;
#else
  long pages = sysconf(_SC_PHYS_PAGES);
  return pages > 0 ? static_cast<uint64_t>(pages) * page_size() : 0;
#endif
}

std::optional<uint64_t> available_memory_bytes() {
#if defined(__linux__)
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t value = 0;
  std::string unit;
  while (in >> key >> value) {
    std::getline(in, unit);
    if (key == "MemAvailable:") return value * 1024;
  }
  return std::nullopt;
#elif defined(__APPLE__)
  vm_statistics64_data_t vm{};
  mach_msg_type_number_t count = HOST_VM_INFO64_COUNT;
  if (host_statistics64(mach_host_self(), HOST_VM_INFO64, reinterpret_cast<host_info64_t>(&vm), &count) !=
      KERN_SUCCESS)
    return std::nullopt;
  return (static_cast<uint64_t>(vm.free_count) + vm.inactive_count + vm.purgeable_count) * page_size();
#else
  return std::nullopt;
#endif
}

uint64_t resident_set_bytes() {
#if defined(__linux__)
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long long size = 0, resident = 0;
  int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * page_size() : 0;
#elif defined(__APPLE__)
  mach_task_basic_info_data_t info{};
  mach_msg_type_number_t count = MACH_TASK_BASIC_INFO_COUNT;
  if (task_info(mach_task_self(), MACH_TASK_BASIC_INFO, reinterpret_cast<task_info_t>(&info), &count) !=
      KERN_SUCCESS)
    return 0;
  return info.resident_size;
#else
  return 0;
#endif
}

uint64_t default_memory_limit() {
  // Three quarters of RAM: the rest stays for the OS, the page cache of files
  // we do not map, and whatever else the user runs beside us.
  uint64_t phys = physical_memory_bytes();
  return phys ? phys / 4 * 3 : uint64_t{8} << 30;
}

void advise_huge_pages(void* p, uint64_t bytes) {
#if defined(MADV_HUGEPAGE)
  // madvise wants a page-aligned start; the kernel uses 2 MiB pages where the range covers whole ones.
  const uintptr_t page = page_size(), start = reinterpret_cast<uintptr_t>(p) / page * page;
  madvise(reinterpret_cast<void*>(start), bytes + (reinterpret_cast<uintptr_t>(p) - start), MADV_HUGEPAGE);
#else
  (void)p, (void)bytes;
#endif
}

}  // namespace umi
