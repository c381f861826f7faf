// Dot products of one weight row (in its file dtype) with a float vector, and
// row dequantization: the inner loops of every matrix product.
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/dtype.h"

namespace umi::cpu {

using DotFn = float (*)(const std::byte* row, const float* x, int64_t n);
// The fastest implementation this CPU runs (chosen once, at first use).
DotFn dot_function(DType t);
// The portable implementation, and a scalar reference that tests compare to.
DotFn dot_portable(DType t);
float dot_reference(DType t, const std::byte* row, const float* x, int64_t n);

void dequantize(DType t, const std::byte* row, float* out, int64_t n);

}  // namespace umi::cpu
