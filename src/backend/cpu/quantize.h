// Quantization of float rows into GGML block formats (umi convert), the
// inverse of dequantize() in dot.h. Row length must be whole blocks.
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/dtype.h"

namespace umi::cpu {

bool quantize_supports(DType t);  // f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k..q6_k, iq4_nl, iq4_xs
void quantize_row(DType t, const float* x, int64_t n, std::byte* out);

}  // namespace umi::cpu
