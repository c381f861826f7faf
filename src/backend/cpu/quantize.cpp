#include "backend/cpu/quantize.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "backend/cpu/half.h"

namespace umi::cpu {

bool quantize_supports(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0 || t == DType::Q4_0;
}

void quantize_row(DType t, const float* x, int64_t n, std::byte* out) {
  auto put16 = [](std::byte* p, uint16_t v) { std::memcpy(p, &v, 2); };
  switch (t) {
    case DType::F32: std::memcpy(out, x, static_cast<size_t>(n) * 4); return;
    case DType::F16: for (int64_t i = 0; i < n; ++i) put16(out + 2 * i, f32_to_f16(x[i])); return;
    case DType::BF16: for (int64_t i = 0; i < n; ++i) put16(out + 2 * i, f32_to_bf16(x[i])); return;
    case DType::Q8_0:
      // d = max|x| / 127, q = round(x / d): as ggml's quantize_row_q8_0_ref.
      for (int64_t b = 0; b < n / 32; ++b) {
        const float* xb = x + b * 32;
        float amax = 0;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        std::byte* blk = out + b * 34;
        put16(blk, f32_to_f16(d));
        for (int i = 0; i < 32; ++i) blk[2 + i] = static_cast<std::byte>(static_cast<int8_t>(std::lround(xb[i] * id)));
      }
      return;
    case DType::Q4_0:
      // d = (value of largest magnitude) / -8, q = clamp(x/d + 8.5): ggml's quantize_row_q4_0_ref.
      for (int64_t b = 0; b < n / 32; ++b) {
        const float* xb = x + b * 32;
        float amax = 0, max = 0;
        for (int i = 0; i < 32; ++i)
          if (std::fabs(xb[i]) > amax) amax = std::fabs(xb[i]), max = xb[i];
        float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        std::byte* blk = out + b * 18;
        put16(blk, f32_to_f16(d));
        for (int i = 0; i < 16; ++i) {
          auto q = [&](float v) { return static_cast<uint8_t>(std::min(15, static_cast<int>(v * id + 8.5f))); };
          blk[2 + i] = static_cast<std::byte>(q(xb[i]) | (q(xb[16 + i]) << 4));
        }
      }
      return;
    default: throw std::invalid_argument("quantize_row: unsupported dtype");
  }
}

}  // namespace umi::cpu
