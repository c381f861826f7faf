// The dot loops compiled for AVX2 + FMA (this file gets -mavx2 -mfma -mf16c),
// plus hand-written integer kernels for quantized weights: the sign trick
// turns int8 x int8 into maddubs' unsigned x signed, 32 products per step.
#include <immintrin.h>

#include "backend/cpu/dot_impl.h"

namespace umi::cpu {

namespace {

// Sum of 32 int8 products as 8 int32 lanes converted to floats.
inline __m256 mul_sum_i8(__m256i a, __m256i b) {
  const __m256i ax = _mm256_sign_epi8(a, a);  // |a| as unsigned
  const __m256i sy = _mm256_sign_epi8(b, a);  // b with a's sign
  const __m256i dot16 = _mm256_maddubs_epi16(ax, sy);
  const __m256i dot32 = _mm256_madd_epi16(dot16, _mm256_set1_epi16(1));
  return _mm256_cvtepi32_ps(dot32);
}

inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256 block_scale(const std::byte* blk, float dx) {
  uint16_t h;
  std::memcpy(&h, blk, 2);
  return _mm256_set1_ps(_cvtsh_ss(h) * dx);
}

float avx2_qdot_q8_0(const std::byte* row, const Q8Block* x, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < n / 32; ++b) {
    const std::byte* blk = row + b * 34;
    __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
    __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].q));
    acc = _mm256_fmadd_ps(block_scale(blk, x[b].d), mul_sum_i8(w, q), acc);
  }
  return hsum8(acc);
}

float avx2_qdot_q4_0(const std::byte* row, const Q8Block* x, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  const __m256i low = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
  for (int64_t b = 0; b < n / 32; ++b) {
    const std::byte* blk = row + b * 18;
    __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    // Values 0..15 from the low nibbles, 16..31 from the high ones.
    __m256i w = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), low);
    w = _mm256_sub_epi8(w, eight);
    __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].q));
    acc = _mm256_fmadd_ps(block_scale(blk, x[b].d), mul_sum_i8(w, q), acc);
  }
  return hsum8(acc);
}

template <bool Q4>
void avx2_qdot4(const std::byte* row, const Q8Block* const x[4], int64_t n, float out[4]) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  const __m256i low = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
  const int64_t stride = Q4 ? 18 : 34;
  for (int64_t b = 0; b < n / 32; ++b) {
    const std::byte* blk = row + b * stride;
    __m256i w;
    if (Q4) {
      __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
      w = _mm256_sub_epi8(_mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), low), eight);
    } else {
      w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
    }
    uint16_t h;
    std::memcpy(&h, blk, 2);
    const float dw = _cvtsh_ss(h);
    const __m256i aw = _mm256_sign_epi8(w, w);
    for (int j = 0; j < 4; ++j) {
      __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j][b].q));
      __m256i dot16 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(q, w));
      __m256 dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(dot16, _mm256_set1_epi16(1)));
      acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw * x[j][b].d), dot, acc[j]);
    }
  }
  for (int j = 0; j < 4; ++j) out[j] = hsum8(acc[j]);
}

}  // namespace

DotFn dot_avx2(DType t) { return impl_table(t); }

QDot4Fn qdot4_avx2(DType t) {
  if (t == DType::Q4_0) return avx2_qdot4<true>;
  if (t == DType::Q8_0) return avx2_qdot4<false>;
  return nullptr;
}

void scale_add_avx2(float* acc, float scale, float w, const std::byte* v, DType v_type, int64_t n) {
  if (v_type == DType::F16) impl_scale_add_f16(acc, scale, w, v, n);
  else impl_scale_add_f32(acc, scale, w, v, n);
}

QDotFn qdot_avx2(DType t) {
  switch (t) {
    case DType::Q8_0: return avx2_qdot_q8_0;
    case DType::Q4_0: return avx2_qdot_q4_0;
    default: return nullptr;
  }
}

}  // namespace umi::cpu
