// The CUDA backend's first piece: how many devices there are and what they
// are. Exists so that the CUDA toolchain is exercised in every build.
#pragma once

#include <string>

namespace umi::cuda {

int device_count();             // 0 when no driver or device is present
std::string device_name(int i);  // empty on error

}  // namespace umi::cuda
