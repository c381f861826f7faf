// The accounted memory pool: the one allocator every subsystem goes through.
//
// Every byte umi holds is counted here by use (weights, KV cache, activations,
// scratch): active, peak, cached, and the limit they must stay under. Freed
// buffers go into a size-bucketed cache (like MLX's buffer cache) so the
// steady state of a decode loop allocates nothing from the OS; the cache is
// evicted least-recently-freed first whenever a new allocation needs its room
// under the limit, or on release_cache().
//
// Allocations are page-aligned and sized to whole pages so that a buffer can
// be handed to a GPU API on unified memory without a copy.
//
// Bytes the pool does not allocate itself but that still occupy memory (mapped
// weights once touched, device memory owned by a backend) are counted through
// reserve(), so one limit covers them all.
//
// Thread-safe. Buffers and reservations must not outlive their pool.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <string>

namespace umi {

// The bytes the pool accounts for a request of `bytes` on a system with pages
// of `page` bytes: whole pages, and above 1 MiB a size class with at most 1/8
// slack so that cached buffers fit later requests. Planning code uses it to
// predict the pool's counters exactly.
uint64_t pool_bucket_size(uint64_t bytes, uint64_t page);

enum class MemoryUse : uint8_t { weights, kv_cache, activations, scratch, other };
inline constexpr size_t kMemoryUseCount = 5;
const char* to_string(MemoryUse use);

// Where a pool's bytes come from: the host (mmap / aligned_alloc, the
// default) or a device (a backend's cudaMalloc). The pool does the accounting
// and caching either way; a source only maps and unmaps.
class MemorySource {
 public:
  virtual ~MemorySource() = default;
  // nullptr when the system has no room.
  virtual void* allocate(uint64_t bytes) = 0;
  virtual void free(void* ptr, uint64_t bytes) = 0;
};

struct PoolOptions {
  MemorySource* source = nullptr;  // nullptr: host memory; otherwise must outlive the pool
  uint64_t limit = 0;           // 0: default_memory_limit()
  uint64_t max_allocation = 0;  // largest single buffer; 0: a quarter of the limit
  uint64_t max_cached = 0;      // cache size cap; 0: no cap other than the limit
};

struct PoolStats {
  uint64_t active = 0;  // bytes in live buffers and reservations
  uint64_t peak = 0;    // high-water mark of active since construction or reset_peak()
  uint64_t cached = 0;  // bytes in freed buffers kept for reuse
  uint64_t limit = 0;
  uint64_t max_allocation = 0;
  std::array<uint64_t, kMemoryUseCount> active_by_use{};
  uint64_t allocations = 0;  // allocate() calls that succeeded
  uint64_t largest = 0;      // the largest buffer allocated (its size class), since construction
  uint64_t cache_hits = 0;   // of those, served from the cache
  uint64_t live_buffers = 0;
};

class Pool;

// A page-aligned block of memory owned by a pool. Move-only; returns itself to
// the pool's cache when destroyed.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Buffer&& other) noexcept { *this = std::move(other); }
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { reset(); }

  void* data() const { return ptr_; }
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t size() const { return size_; }          // bytes asked for
  size_t capacity() const { return capacity_; }  // bytes accounted (whole pages)
  MemoryUse use() const { return use_; }
  explicit operator bool() const { return ptr_ != nullptr; }
  void reset();

 private:
  friend class Pool;
  Pool* pool_ = nullptr;
  void* ptr_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
  MemoryUse use_ = MemoryUse::other;
};

// Bytes counted against the limit that live outside the pool's own buffers.
class Reservation {
 public:
  Reservation() = default;
  Reservation(Reservation&& other) noexcept { *this = std::move(other); }
  Reservation& operator=(Reservation&& other) noexcept;
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  ~Reservation() { reset(); }

  uint64_t bytes() const { return bytes_; }
  explicit operator bool() const { return pool_ != nullptr; }
  void reset();

 private:
  friend class Pool;
  Pool* pool_ = nullptr;
  uint64_t bytes_ = 0;
  MemoryUse use_ = MemoryUse::other;
};

class Pool {
 public:
  explicit Pool(PoolOptions options = {});
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Throws OutOfMemory naming `what`, the request and the budget when the
  // allocation would pass the limit or the single-allocation maximum.
  Buffer allocate(size_t bytes, MemoryUse use, std::string_view what = {});
  // The same, but an empty Buffer instead of an exception: for callers that
  // can wait for memory (the scheduler).
  Buffer try_allocate(size_t bytes, MemoryUse use);

  Reservation reserve(uint64_t bytes, MemoryUse use, std::string_view what = {});
  Reservation try_reserve(uint64_t bytes, MemoryUse use);

  // Frees every cached buffer back to the OS; returns the bytes released.
  uint64_t release_cache();
  // Frees cached buffers, oldest first, until at most `keep` bytes stay cached.
  uint64_t trim_cache(uint64_t keep);

  PoolStats stats() const;
  void reset_peak();
  // Lowering the limit below what is active is allowed: new allocations then
  // fail until enough is freed.
  void set_limit(uint64_t limit);
  uint64_t limit() const;

  uint64_t bucket_size(uint64_t bytes) const { return pool_bucket_size(bytes, page_); }

 private:
  friend class Buffer;
  friend class Reservation;
  struct Cached {
    void* ptr;
    uint64_t capacity;
    std::multimap<uint64_t, std::list<Cached>::iterator>::iterator by_size;
  };

  enum class Refusal { none, too_large, over_limit };
  Refusal admit_locked(uint64_t capacity);
  void* take_from_cache_locked(uint64_t capacity);
  void evict_oldest_locked();
  void count_active_locked(uint64_t bytes, MemoryUse use);
  void give_back(void* ptr, uint64_t capacity, MemoryUse use);
  void* source_allocate(uint64_t capacity);
  void source_free(void* ptr, uint64_t capacity);
  void unreserve(uint64_t bytes, MemoryUse use);
  std::string refusal_message_locked(Refusal why, uint64_t capacity, std::string_view what) const;

  mutable std::mutex mu_;
  MemorySource* source_;
  uint64_t page_;
  uint64_t limit_;
  uint64_t max_allocation_;
  bool max_allocation_from_limit_;
  uint64_t max_cached_;
  PoolStats stats_;
  std::list<Cached> lru_;  // front: freed longest ago
  std::multimap<uint64_t, std::list<Cached>::iterator> by_size_;
};

}  // namespace umi
