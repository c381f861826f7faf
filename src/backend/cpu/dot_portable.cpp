// The baseline build of the dot loops, the reference, dequantization, and the
// choice between builds.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "backend/cpu/dot_impl.h"
#include "backend/cpu/half.h"

namespace umi::cpu {

#if defined(UMI_HAVE_AVX2_BUILD)
DotFn dot_avx2(DType t);  // dot_avx2.cpp, compiled with -mavx2 -mfma
QDotFn qdot_avx2(DType t);
QDot4Fn qdot4_avx2(DType t);
void scale_add_avx2(float* acc, float scale, float w, const std::byte* v, DType v_type, int64_t n);
#endif

namespace {
bool have_avx2() {
#if defined(UMI_HAVE_AVX2_BUILD)
  // F16C is not a feature name clang 14 accepts here; every AVX2 CPU has it.
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}
}  // namespace

QDotFn qdot_portable(DType t) { return impl_qtable(t); }

QDot4Fn qdot4_function(DType t) {
#if defined(UMI_HAVE_AVX2_BUILD)
  if (have_avx2()) return qdot4_avx2(t);
#endif
  (void)t;
  return nullptr;
}

void scale_add(float* acc, float scale, float w, const std::byte* v, DType v_type, int64_t n) {
#if defined(UMI_HAVE_AVX2_BUILD)
  if (have_avx2()) return scale_add_avx2(acc, scale, w, v, v_type, n);
#endif
  if (v_type == DType::F16) impl_scale_add_f16(acc, scale, w, v, n);
  else impl_scale_add_f32(acc, scale, w, v, n);
}

QDotFn qdot_function(DType t) {
#if defined(UMI_HAVE_AVX2_BUILD)
  if (have_avx2()) return qdot_avx2(t);
#endif
  return qdot_portable(t);
}

void quantize_activations(const float* x, int64_t n, Q8Block* out) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const float* xb = x + b * 32;
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    out[b].d = d;
    for (int i = 0; i < 32; ++i) out[b].q[i] = static_cast<int8_t>(std::lround(xb[i] * id));
  }
}

DotFn dot_portable(DType t) { return impl_table(t); }

DotFn dot_function(DType t) {
#if defined(UMI_HAVE_AVX2_BUILD)
  if (have_avx2()) return dot_avx2(t);
#endif
  return dot_portable(t);
}

void dequantize(DType t, const std::byte* row, float* out, int64_t n) {
  auto u16 = [](const std::byte* p) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
  };
  switch (t) {
    case DType::F32: std::memcpy(out, row, static_cast<size_t>(n) * 4); return;
    case DType::F16: for (int64_t i = 0; i < n; ++i) out[i] = f16_to_f32(u16(row + 2 * i)); return;
    case DType::BF16: for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_f32(u16(row + 2 * i)); return;
    case DType::Q8_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        float d = f16_to_f32(u16(row + b * 34));
        for (int i = 0; i < 32; ++i) out[b * 32 + i] = d * static_cast<float>(static_cast<int8_t>(row[b * 34 + 2 + i]));
      }
      return;
    case DType::Q4_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        float d = f16_to_f32(u16(row + b * 18));
        for (int i = 0; i < 16; ++i) {
          uint8_t q = static_cast<uint8_t>(row[b * 18 + 2 + i]);
          out[b * 32 + i] = d * static_cast<float>((q & 15) - 8);
          out[b * 32 + 16 + i] = d * static_cast<float>((q >> 4) - 8);
        }
      }
      return;
    default: throw std::runtime_error("dequantize: unsupported dtype");
  }
}

float dot_reference(DType t, const std::byte* row, const float* x, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  dequantize(t, row, w.data(), n);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(w[static_cast<size_t>(i)]) * x[i];
  return static_cast<float>(s);
}

}  // namespace umi::cpu
