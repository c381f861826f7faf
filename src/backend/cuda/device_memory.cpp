#include "backend/cuda/device_memory.h"

#include <cuda_runtime.h>

#include <string>

#include "backend/cuda/device_info.h"
#include "core/error.h"
#include "core/units.h"

namespace umi::cuda {

namespace {
// Room the CUDA context keeps for itself beyond what the pool counts
// (cuBLAS handles, graphs, the driver's own buffers).
constexpr uint64_t kContextMargin = 512ull << 20;
}  // namespace

void* CudaAllocator::allocate(uint64_t bytes) {
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error: running out is not fatal
    return nullptr;
  }
  return p;
}

void CudaAllocator::free(void* ptr, uint64_t) { cudaFree(ptr); }

CudaDeviceMemory::CudaDeviceMemory(uint64_t limit) {
  if (device_count() == 0) throw InputError("--device cuda: no CUDA device is visible to this process");
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaSetDevice(0) != cudaSuccess || cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    cudaGetLastError();
    throw Error("cuda: cannot read the device's free memory");
  }
  if (limit > free_bytes)
    throw InputError("--device-memory-limit " + format_bytes(limit) + " is more than the GPU has free (" + format_bytes(free_bytes) +
                     " of " + format_bytes(total_bytes) + ")");
  PoolOptions po;
  po.source = &allocator_;
  po.limit = limit ? limit : free_bytes > kContextMargin ? free_bytes - kContextMargin : free_bytes / 2;
  po.max_allocation = po.limit;
  pool_ = std::make_unique<Pool>(po);
}

CudaDeviceMemory::~CudaDeviceMemory() = default;

}  // namespace umi::cuda
