#include "backend/backend.h"

#include "core/error.h"

namespace umi {

Device parse_device(const std::string& name) {
  if (name == "auto") return Device::automatic;
  if (name == "cpu") return Device::cpu;
  if (name == "cuda") return Device::cuda;
  throw InputError("unknown device '" + name + "' (auto, cpu, cuda)");
}

const char* to_string(Device d) {
  switch (d) {
    case Device::automatic: return "auto";
    case Device::cpu: return "cpu";
    case Device::cuda: return "cuda";
  }
  return "?";
}

void Backend::matmuls(const float* x, int64_t rows, std::span<const Product> products) {
  for (const Product& p : products) matmul(p.w, x, rows, p.y);
}

void Backend::gated_matmul(const MatrixView& wg, const MatrixView& wu, const float* x, int64_t rows, float* gate, float* up) {
  matmul(wg, x, rows, gate);
  matmul(wu, x, rows, up);
  swiglu(gate, up, rows * wg.rows);
}

}  // namespace umi
