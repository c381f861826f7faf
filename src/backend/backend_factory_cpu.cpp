// make_backend() for a build without CUDA: the CPU is the only device.
#include <memory>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace umi {

namespace {
void refuse_cuda(Device device) {
  if (device == Device::cuda) throw InputError("--device cuda: this umi was built without CUDA (-DUMI_CUDA=ON)");
}
}  // namespace

std::unique_ptr<DeviceMemory> make_device_memory(Device device, uint64_t) {
  refuse_cuda(device);
  return nullptr;
}

std::unique_ptr<Backend> make_backend(Device device, Pool& host, const BackendSetup& setup) {
  refuse_cuda(device);
  return std::make_unique<cpu::CpuBackend>(host, setup);
}

bool device_available(Device device) { return device != Device::cuda; }

}  // namespace umi
