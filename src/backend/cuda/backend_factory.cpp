// make_backend() for a build with CUDA: the GPU when asked for or, on
// automatic, when one is visible; the CPU otherwise.
#include <memory>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/device_memory.h"
#include "backend/cuda/device_info.h"

namespace umi {

namespace {
bool uses_cuda(Device device) { return device == Device::cuda || (device == Device::automatic && cuda::device_count() > 0); }
}  // namespace

std::unique_ptr<DeviceMemory> make_device_memory(Device device, uint64_t limit) {
  if (!uses_cuda(device)) return nullptr;
  return std::make_unique<cuda::CudaDeviceMemory>(limit);
}

std::unique_ptr<Backend> make_backend(Device device, Pool& host, const BackendSetup& setup) {
  if (uses_cuda(device))
    return std::make_unique<cuda::CudaBackend>(host, setup);
  return std::make_unique<cpu::CpuBackend>(host, setup);
}

bool device_available(Device device) { return device != Device::cuda || cuda::device_count() > 0; }

}  // namespace umi
