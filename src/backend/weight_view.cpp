#include "backend/weight_view.h"

#include <cstring>
#include <string>

#include "backend/cpu/half.h"
#include "core/error.h"

namespace umi {

size_t MatrixView::row_bytes() const { return dtype_bytes(dtype, static_cast<uint64_t>(cols)).value_or(0); }

size_t VectorView::bytes() const { return dtype_bytes(dtype, static_cast<uint64_t>(size)).value_or(0); }

float VectorView::at(int64_t i) const {
  switch (dtype) {
    case DType::F32: {
      float f;
      std::memcpy(&f, data + 4 * i, 4);
      return f;
    }
    case DType::F16: {
      uint16_t h;
      std::memcpy(&h, data + 2 * i, 2);
      return cpu::f16_to_f32(h);
    }
    case DType::BF16: {
      uint16_t h;
      std::memcpy(&h, data + 2 * i, 2);
      return cpu::bf16_to_f32(h);
    }
    default: throw Error("vector of dtype " + std::string(to_string(dtype)) + " is not supported");
  }
}

}  // namespace umi
