// The GPU's memory as one accounted pool (backend.h's DeviceMemory): what
// every CUDA backend of the process allocates from when it is shared, so
// that the models resident on the GPU stay under one limit together.
#pragma once

#include <cstdint>

#include "backend/backend.h"
#include "memory/pool.h"

namespace umi::cuda {

// cudaMalloc and cudaFree, nothing cached here (the pool caches).
class CudaAllocator final : public MemorySource {
 public:
  void* allocate(uint64_t bytes) override;
  void free(void* ptr, uint64_t bytes) override;
};

class CudaDeviceMemory final : public DeviceMemory {
 public:
  // `limit` bytes (0: what is free now less a margin). Throws InputError when
  // no device is visible or `limit` is more than the device has free.
  explicit CudaDeviceMemory(uint64_t limit);
  ~CudaDeviceMemory() override;
  Pool& pool() override { return *pool_; }

 private:
  CudaAllocator allocator_;  // declared first: the pool returns its buffers to it
  std::unique_ptr<Pool> pool_;
};

}  // namespace umi::cuda
