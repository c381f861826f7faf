// What the operating system says about memory. The only place that knows how
// to ask it on each platform (Linux: /proc; macOS: sysctl and mach).
#pragma once

#include <cstdint>
#include <optional>

namespace umi {

// The allocation granularity the pool aligns to: 4 KiB on x86 Linux, 16 KiB on
// Apple Silicon. Buffers aligned to it can be wrapped by Metal without a copy.
uint64_t page_size();

uint64_t physical_memory_bytes();

// Memory the kernel could hand out now without swapping (Linux MemAvailable).
// nullopt where the platform does not say.
std::optional<uint64_t> available_memory_bytes();

// Resident set of this process.
uint64_t resident_set_bytes();

// The pool's default limit: a share of physical memory that leaves room for
// the OS and other programs.
uint64_t default_memory_limit();

// Asks the kernel to back [p, p + bytes) with 2 MiB pages where it can
// (Linux transparent huge pages, including a file's large folios); a no-op
// elsewhere. Streaming reads through 4 KB pages ran ~25% slower on the
// development VM (49-52 against 69-72 GB/s). Call before the first touch.
void advise_huge_pages(void* p, uint64_t bytes);

}  // namespace umi
