#include "memory/pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <utility>

#include "core/error.h"
#include "core/units.h"
#include "memory/system_memory.h"

namespace umi {

namespace {

// Below this, buffers come from the C allocator; above it from mmap, so that
// freeing one returns its pages to the OS at once rather than to a heap arena.
constexpr uint64_t kMmapThreshold = 64 * 1024;

void* os_allocate(uint64_t capacity, uint64_t page) {
  if (capacity >= kMmapThreshold) {
    void* p = mmap(nullptr, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
  return std::aligned_alloc(page, capacity);
}

void os_free(void* ptr, uint64_t capacity) {
  if (capacity >= kMmapThreshold) munmap(ptr, capacity);
  else std::free(ptr);
}

}  // namespace

uint64_t pool_bucket_size(uint64_t bytes, uint64_t page) {
  if (bytes == 0) bytes = 1;
  uint64_t pages = (bytes + page - 1) / page * page;
  constexpr uint64_t kClassStart = 1 << 20;
  if (pages <= kClassStart) return pages;
  uint64_t step = std::bit_floor(pages) / 8;
  if (step < page) step = page;
  return (pages + step - 1) / step * step;
}

const char* to_string(MemoryUse use) {
  switch (use) {
    case MemoryUse::weights: return "weights";
    case MemoryUse::kv_cache: return "kv_cache";
    case MemoryUse::activations: return "activations";
    case MemoryUse::scratch: return "scratch";
    case MemoryUse::other: return "other";
  }
  return "?";
}

// ---- Buffer / Reservation ---------------------------------------------------

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    reset();
    pool_ = std::exchange(other.pool_, nullptr);
    ptr_ = std::exchange(other.ptr_, nullptr);
    size_ = std::exchange(other.size_, 0);
    capacity_ = std::exchange(other.capacity_, 0);
    use_ = other.use_;
  }
  return *this;
}

void Buffer::reset() {
  if (pool_ && ptr_) pool_->give_back(ptr_, capacity_, use_);
  pool_ = nullptr;
  ptr_ = nullptr;
  size_ = capacity_ = 0;
}

Reservation& Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    reset();
    pool_ = std::exchange(other.pool_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    use_ = other.use_;
  }
  return *this;
}

void Reservation::reset() {
  if (pool_) pool_->unreserve(bytes_, use_);
  pool_ = nullptr;
  bytes_ = 0;
}

// ---- Pool -------------------------------------------------------------------

Pool::Pool(PoolOptions options)
    : source_(options.source),
      page_(page_size()),
      limit_(options.limit ? options.limit : default_memory_limit()),
      max_allocation_(options.max_allocation ? options.max_allocation : limit_ / 4),
      max_allocation_from_limit_(options.max_allocation == 0),
      max_cached_(options.max_cached ? options.max_cached : UINT64_MAX) {
  stats_.limit = limit_;
  stats_.max_allocation = max_allocation_;
}

Pool::~Pool() { release_cache(); }

void* Pool::source_allocate(uint64_t capacity) {
  return source_ ? source_->allocate(capacity) : os_allocate(capacity, page_);
}

void Pool::source_free(void* ptr, uint64_t capacity) {
  if (source_) source_->free(ptr, capacity);
  else os_free(ptr, capacity);
}


Pool::Refusal Pool::admit_locked(uint64_t capacity) {
  if (capacity > max_allocation_) return Refusal::too_large;
  if (stats_.active + capacity > limit_) return Refusal::over_limit;
  return Refusal::none;
}

void Pool::count_active_locked(uint64_t bytes, MemoryUse use) {
  stats_.active += bytes;
  stats_.active_by_use[static_cast<size_t>(use)] += bytes;
  if (stats_.active > stats_.peak) stats_.peak = stats_.active;
}

void* Pool::take_from_cache_locked(uint64_t capacity) {
  auto it = by_size_.find(capacity);
  if (it == by_size_.end()) return nullptr;
  // Several buffers of one size: take the most recently freed, whose pages are
  // most likely still warm in the CPU caches and TLB.
  auto last = by_size_.upper_bound(capacity);
  --last;
  auto node = last->second;
  void* ptr = node->ptr;
  by_size_.erase(last);
  lru_.erase(node);
  stats_.cached -= capacity;
  return ptr;
}

void Pool::evict_oldest_locked() {
  Cached& oldest = lru_.front();
  source_free(oldest.ptr, oldest.capacity);
  stats_.cached -= oldest.capacity;
  by_size_.erase(oldest.by_size);
  lru_.pop_front();
}

std::string Pool::refusal_message_locked(Refusal why, uint64_t capacity, std::string_view what) const {
  std::string subject = what.empty() ? std::string() : " for " + std::string(what);
  if (why == Refusal::too_large)
    return "cannot allocate " + format_bytes(capacity) + subject + ": larger than the " +
           format_bytes(max_allocation_) + " single-allocation maximum";
  return "memory limit: cannot allocate " + format_bytes(capacity) + subject + ": " +
         format_bytes(stats_.active) + " in use + " + format_bytes(capacity) + " would pass the " +
         format_bytes(limit_) + " limit";
}

Buffer Pool::try_allocate(size_t bytes, MemoryUse use) {
  uint64_t capacity = bucket_size(bytes);
  std::lock_guard lock(mu_);
  if (admit_locked(capacity) != Refusal::none) return {};
  void* ptr = take_from_cache_locked(capacity);
  if (ptr) {
    ++stats_.cache_hits;
  } else {
    while (!lru_.empty() && stats_.active + stats_.cached + capacity > limit_) evict_oldest_locked();
    ptr = source_allocate(capacity);
    if (!ptr && !lru_.empty()) {
      // The OS is short even though our budget is not: give it our cache.
      while (!lru_.empty()) evict_oldest_locked();
      ptr = source_allocate(capacity);
    }
    if (!ptr) return {};
  }
  count_active_locked(capacity, use);
  ++stats_.allocations;
  ++stats_.live_buffers;
  stats_.largest = std::max(stats_.largest, capacity);
  Buffer b;
  b.pool_ = this;
  b.ptr_ = ptr;
  b.size_ = bytes;
  b.capacity_ = capacity;
  b.use_ = use;
  return b;
}

Buffer Pool::allocate(size_t bytes, MemoryUse use, std::string_view what) {
  Buffer b = try_allocate(bytes, use);
  if (b) return b;
  uint64_t capacity = bucket_size(bytes);
  std::lock_guard lock(mu_);
  Refusal why = admit_locked(capacity);
  if (why == Refusal::none)
    throw OutOfMemory("the system refused " + format_bytes(capacity) +
                      (what.empty() ? std::string() : " for " + std::string(what)) +
                      " although the pool's limit allows it");
  throw OutOfMemory(refusal_message_locked(why, capacity, what));
}

Reservation Pool::try_reserve(uint64_t bytes, MemoryUse use) {
  std::lock_guard lock(mu_);
  if (stats_.active + bytes > limit_) return {};
  while (!lru_.empty() && stats_.active + stats_.cached + bytes > limit_) evict_oldest_locked();
  count_active_locked(bytes, use);
  Reservation r;
  r.pool_ = this;
  r.bytes_ = bytes;
  r.use_ = use;
  return r;
}

Reservation Pool::reserve(uint64_t bytes, MemoryUse use, std::string_view what) {
  Reservation r = try_reserve(bytes, use);
  if (r) return r;
  std::lock_guard lock(mu_);
  throw OutOfMemory(refusal_message_locked(Refusal::over_limit, bytes, what));
}

void Pool::give_back(void* ptr, uint64_t capacity, MemoryUse use) {
  std::lock_guard lock(mu_);
  stats_.active -= capacity;
  stats_.active_by_use[static_cast<size_t>(use)] -= capacity;
  --stats_.live_buffers;
  if (capacity > max_cached_ || stats_.active + capacity > limit_) {
    source_free(ptr, capacity);
    return;
  }
  lru_.push_back(Cached{ptr, capacity, {}});
  lru_.back().by_size = by_size_.emplace(capacity, std::prev(lru_.end()));
  stats_.cached += capacity;
  while (!lru_.empty() && (stats_.cached > max_cached_ || stats_.active + stats_.cached > limit_))
    evict_oldest_locked();
}

void Pool::unreserve(uint64_t bytes, MemoryUse use) {
  std::lock_guard lock(mu_);
  stats_.active -= bytes;
  stats_.active_by_use[static_cast<size_t>(use)] -= bytes;
}

uint64_t Pool::release_cache() { return trim_cache(0); }

uint64_t Pool::trim_cache(uint64_t keep) {
  std::lock_guard lock(mu_);
  uint64_t before = stats_.cached;
  while (!lru_.empty() && stats_.cached > keep) evict_oldest_locked();
  return before - stats_.cached;
}

PoolStats Pool::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void Pool::reset_peak() {
  std::lock_guard lock(mu_);
  stats_.peak = stats_.active;
}

void Pool::set_limit(uint64_t limit) {
  std::lock_guard lock(mu_);
  limit_ = limit;
  stats_.limit = limit;
  if (max_allocation_from_limit_) {
    max_allocation_ = limit / 4;
    stats_.max_allocation = max_allocation_;
  }
  while (!lru_.empty() && stats_.active + stats_.cached > limit_) evict_oldest_locked();
}

uint64_t Pool::limit() const {
  std::lock_guard lock(mu_);
  return limit_;
}

}  // namespace umi
