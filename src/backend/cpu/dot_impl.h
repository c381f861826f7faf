// The dot-product loops, written once with GCC/Clang vector extensions so
// that each translation unit including this header compiles them for its own
// instruction set (dot_portable.cpp: the baseline, SSE2 on x86 and NEON on
// arm64; dot_avx2.cpp: AVX2+FMA; dot_neon.cpp: NEON with DotProd). Everything
// here is TU-local on purpose.
#pragma once

#include <cmath>

#include <cstdint>
#include <cstring>

#include "backend/cpu/dot.h"
#include "backend/cpu/half.h"
#include "backend/cpu/q8_pairs.h"
#include "backend/cpu/quant_blocks.h"

#if defined(__F16C__) || defined(__AVX__)
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>  // every arm64 CPU has NEON with half conversions
#endif

namespace umi::cpu {
namespace {

typedef float v8f __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint16_t v8h __attribute__((vector_size(16)));
typedef int8_t v8b __attribute__((vector_size(8)));
typedef uint8_t v8ub __attribute__((vector_size(8)));

inline v8f load_f32(const void* p) {
  v8f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline float hsum(v8f v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

inline uint16_t load_u16(const std::byte* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Eight halves to floats: one instruction where the build has F16C (the x86
// builds), two on arm64; elsewhere without branches: shift the exponent and
// mantissa into place and rescale by 2^112 (127 - 15 bias); Inf/NaN get the
// top exponent.
// (Decode attention converts every cached K and V: with the emulation the
// conversion took 5.7% of a 1B Q4_0 step at ~400 positions, 3.4% with F16C.)
inline v8f f16x8_to_f32(const std::byte* p) {
#if defined(__F16C__)
  const __m256 c = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  v8f r;
  std::memcpy(&r, &c, sizeof r);
  return r;
#elif defined(__aarch64__)
  const float16x8_t halves = vreinterpretq_f16_u8(vld1q_u8(reinterpret_cast<const uint8_t*>(p)));
  const float32x4_t lo = vcvt_f32_f16(vget_low_f16(halves)), hi = vcvt_high_f32_f16(halves);
  v8f r;
  std::memcpy(&r, &lo, sizeof lo);
  std::memcpy(reinterpret_cast<char*>(&r) + sizeof lo, &hi, sizeof hi);
  return r;
#endif
  v8h h;
  std::memcpy(&h, p, sizeof h);
  v8u x = __builtin_convertvector(h, v8u);
  v8u sign = (x & 0x8000u) << 16;
  v8u em = x & 0x7fffu;
  v8u bits = em << 13;
  v8f f;
  std::memcpy(&f, &bits, sizeof f);
  f *= 0x1p112f;
  v8u fb;
  std::memcpy(&fb, &f, sizeof fb);
  v8u special = (v8u)(em >= 0x7c00u);
  fb = (fb & ~special) | (special & ((em << 13) | 0x7f800000u));
  fb |= sign;
  std::memcpy(&f, &fb, sizeof f);
  return f;
}

inline v8f bf16x8_to_f32(const std::byte* p) {
  v8h h;
  std::memcpy(&h, p, sizeof h);
  v8u x = __builtin_convertvector(h, v8u) << 16;
  v8f f;
  std::memcpy(&f, &x, sizeof f);
  return f;
}

// One half to a float: one instruction on arm64 (fcvt), elsewhere half.h's
// exact conversion.
inline float scalar_f16(const std::byte* p) {
#if defined(__aarch64__)
  __fp16 h;
  std::memcpy(&h, p, 2);
  return h;
#else
  return f16_to_f32(load_u16(p));
#endif
}

float impl_dot_f32(const std::byte* row, const float* x, int64_t n) {
  v8f a0{}, a1{}, a2{}, a3{};
  int64_t k = 0;
  for (; k + 32 <= n; k += 32) {
    a0 += load_f32(row + 4 * k) * load_f32(x + k);
    a1 += load_f32(row + 4 * (k + 8)) * load_f32(x + k + 8);
    a2 += load_f32(row + 4 * (k + 16)) * load_f32(x + k + 16);
    a3 += load_f32(row + 4 * (k + 24)) * load_f32(x + k + 24);
  }
  for (; k + 8 <= n; k += 8) a0 += load_f32(row + 4 * k) * load_f32(x + k);
  float s = hsum((a0 + a1) + (a2 + a3));
  for (; k < n; ++k) {
    float w;
    std::memcpy(&w, row + 4 * k, 4);
    s += w * x[k];
  }
  return s;
}

template <v8f (*Load)(const std::byte*)>
float impl_dot_16bit(const std::byte* row, const float* x, int64_t n, float (*scalar)(const std::byte*)) {
  v8f a0{}, a1{};
  int64_t k = 0;
  for (; k + 16 <= n; k += 16) {
    a0 += Load(row + 2 * k) * load_f32(x + k);
    a1 += Load(row + 2 * (k + 8)) * load_f32(x + k + 8);
  }
  for (; k + 8 <= n; k += 8) a0 += Load(row + 2 * k) * load_f32(x + k);
  float s = hsum(a0 + a1);
  for (; k < n; ++k) s += scalar(row + 2 * k) * x[k];
  return s;
}

float scalar_bf16(const std::byte* p) {
  uint32_t bits = static_cast<uint32_t>(load_u16(p)) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float impl_dot_f16(const std::byte* row, const float* x, int64_t n) { return impl_dot_16bit<f16x8_to_f32>(row, x, n, scalar_f16); }
float impl_dot_bf16(const std::byte* row, const float* x, int64_t n) { return impl_dot_16bit<bf16x8_to_f32>(row, x, n, scalar_bf16); }

// Q8_0 block: f16 scale d, then 32 signed bytes; value = d * q.
float impl_dot_q8_0(const std::byte* row, const float* x, int64_t n) {
  float s = 0;
  for (int64_t b = 0; b < n / 32; ++b) {
    const std::byte* blk = row + b * 34;
    const float* xb = x + b * 32;
    v8f acc{};
    for (int g = 0; g < 4; ++g) {
      v8b q;
      std::memcpy(&q, blk + 2 + 8 * g, 8);
      acc += __builtin_convertvector(q, v8f) * load_f32(xb + 8 * g);
    }
    s += scalar_f16(blk) * hsum(acc);
  }
  return s;
}

// Q4_0 block: f16 scale d, then 16 bytes: low nibbles are values 0..15, high
// nibbles 16..31; value = d * (q - 8).
float impl_dot_q4_0(const std::byte* row, const float* x, int64_t n) {
  float s = 0;
  for (int64_t b = 0; b < n / 32; ++b) {
    const std::byte* blk = row + b * 18;
    const float* xb = x + b * 32;
    v8f acc{};
    for (int g = 0; g < 2; ++g) {
      v8ub q;
      std::memcpy(&q, blk + 2 + 8 * g, 8);
      v8f lo = __builtin_convertvector(q & 15, v8f) - 8.0f;
      v8f hi = __builtin_convertvector(q >> 4, v8f) - 8.0f;
      acc += lo * load_f32(xb + 8 * g) + hi * load_f32(xb + 16 + 8 * g);
    }
    s += scalar_f16(blk) * hsum(acc);
  }
  return s;
}

// Integer dot products of quantized weights with q8 activations, portable
// form: each 32-value sub-block is decoded to int8 with its scales, then
// multiplied in int16 vector lanes. The x86 builds have their own kernels.
typedef int16_t v16s __attribute__((vector_size(32)));
typedef int8_t v16b __attribute__((vector_size(16)));

inline int32_t dot16_i8(const int8_t* a, const int8_t* b) {
  v16b va, vb;
  std::memcpy(&va, a, 16), std::memcpy(&vb, b, 16);
  v16s p = __builtin_convertvector(va, v16s) * __builtin_convertvector(vb, v16s);
  int32_t s = 0;
  for (int i = 0; i < 16; ++i) s += p[i];
  return s;
}

// Eight floats to the nearest integers, ties to even (the current rounding
// mode, as std::nearbyint): one instruction in the x86 builds, two on arm64. Decode
// quantizes every product's activations on one thread while the others
// wait; element by element this took ~1 ns a value (8 us for an 8192-wide
// down projection).
inline v8i round_to_int(v8f p) {
#if defined(__AVX__)
  __m256 f;
  std::memcpy(&f, &p, sizeof f);
  const __m256i r = _mm256_cvtps_epi32(f);
  v8i out;
  std::memcpy(&out, &r, sizeof out);
  return out;
#elif defined(__aarch64__)
  float32x4_t f[2];
  std::memcpy(f, &p, sizeof p);
  const int32x4_t r[2] = {vcvtnq_s32_f32(f[0]), vcvtnq_s32_f32(f[1])};  // to nearest, ties to even
  v8i out;
  std::memcpy(&out, r, sizeof out);
  return out;
#else
  v8i out;
  for (int i = 0; i < 8; ++i) out[i] = static_cast<int32_t>(std::nearbyint(p[i]));
  return out;
#endif
}

inline int32_t hsum_i(v8i s) { return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])); }

// x to q8 blocks: d = max|x| / 127, q = the float x * (1 / d) rounded to
// nearest, ties to even (round_to_int, in every build), sums per half.
void impl_quantize_activations(const float* x, int64_t n, Q8Block* out) {
  for (int64_t b = 0; b < n / 32; ++b) {
    v8f v[4], amax{};
    for (int g = 0; g < 4; ++g) {
      v[g] = load_f32(x + b * 32 + 8 * g);
      v8f a = v[g] < 0 ? -v[g] : v[g];
      amax = amax > a ? amax : a;
    }
    float m = 0;
    for (int i = 0; i < 8; ++i) m = m > amax[i] ? m : amax[i];
    const float d = m / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    out[b].d = d;
    v8i sum[2] = {};
    for (int g = 0; g < 4; ++g) {
      // The product rounded to a float, then to the nearest integer (ties to
      // even): the rule the GPU's quantizer follows too. Written as
      // x * id + 1.5 * 2^23 the compiler fused it into one FMA where the
      // target has one, rounding the exact product instead: 2 blocks in a
      // million then differed from the GPU's.
      const v8i q = round_to_int(v[g] * id);
      const v8b q8 = __builtin_convertvector(q, v8b);
      std::memcpy(out[b].q + 8 * g, &q8, sizeof q8);
      sum[g / 2] += q;
    }
    for (int h = 0; h < 2; ++h) {
      const v8i s = sum[h];
      out[b].sum[h] = static_cast<int16_t>(hsum_i(s));
    }
  }
}

// x to Q8KBlocks (q8_pairs.h): one scale per 256 values, rounded as
// impl_quantize_activations; sums per 16 and per 32.
void impl_quantize_activations_k(const float* x, int64_t n, Q8KBlock* out) {
  for (int64_t b = 0; b < n / 256; ++b) {
    const float* xb = x + b * 256;
    v8f amax{};
    for (int g = 0; g < 32; ++g) {
      const v8f v = load_f32(xb + 8 * g), a = v < 0 ? -v : v;
      amax = amax > a ? amax : a;
    }
    float m = 0;
    for (int i = 0; i < 8; ++i) m = m > amax[i] ? m : amax[i];
    const float d = m / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    Q8KBlock& o = out[b];
    for (float& l : o.d) l = d;
    for (int h = 0; h < 16; ++h) {
      v8i sum{};
      for (int g = 0; g < 2; ++g) {
        const v8i q = round_to_int(load_f32(xb + 16 * h + 8 * g) * id);  // as impl_quantize_activations: no FMA
        const v8b q8 = __builtin_convertvector(q, v8b);
        std::memcpy(o.q + 16 * h + 8 * g, &q8, sizeof q8);
        sum += q;
      }
      o.sum16[h] = static_cast<int16_t>(hsum_i(sum));
    }
    for (int s = 0; s < 8; ++s) o.sum32[s] = static_cast<int16_t>(o.sum16[2 * s] + o.sum16[2 * s + 1]);
  }
}

// One sub-block: value i = scale[i / 16] * w[i] + min[i / 16].
struct Sub32 {
  int8_t w[32];
  float scale[2];
  float min[2];
};

inline uint8_t byte_at(const std::byte* p) { return static_cast<uint8_t>(*p); }

// The 32-value formats (see quant_blocks.h).
template <int Bits, bool HasMin>
void decode_small(const std::byte* blk, int, Sub32& o) {
  const float d = scalar_f16(blk);
  o.scale[0] = o.scale[1] = d;
  o.min[0] = o.min[1] = HasMin ? scalar_f16(blk + 2) : 0.0f;
  const std::byte* p = blk + (HasMin ? 4 : 2);
  const uint32_t qh = Bits == 5 ? load_le32(p) : 0;
  const std::byte* qs = p + (Bits == 5 ? 4 : 0);
  const int centre = HasMin ? 0 : (Bits == 5 ? 16 : 8);
  for (int i = 0; i < 16; ++i) {
    int lo = byte_at(qs + i) & 0xF, hi = byte_at(qs + i) >> 4;
    if (Bits == 5) lo |= static_cast<int>((qh >> i) & 1) << 4, hi |= static_cast<int>((qh >> (i + 16)) & 1) << 4;
    o.w[i] = static_cast<int8_t>(lo - centre);
    o.w[i + 16] = static_cast<int8_t>(hi - centre);
  }
}

void decode_q8_0(const std::byte* blk, int, Sub32& o) {
  o.scale[0] = o.scale[1] = scalar_f16(blk);
  o.min[0] = o.min[1] = 0;
  std::memcpy(o.w, blk + 2, 32);
}

template <bool FiveBit>
void decode_q45k(const std::byte* blk, int s, Sub32& o) {
  uint8_t sc[8], m[8];
  unpack_k_scales(blk + 4, sc, m);
  o.scale[0] = o.scale[1] = scalar_f16(blk) * sc[s];
  o.min[0] = o.min[1] = -scalar_f16(blk + 2) * m[s];
  const std::byte* qs = blk + (FiveBit ? 48 : 16) + 32 * (s / 2);
  for (int l = 0; l < 32; ++l) {
    int q = s % 2 ? byte_at(qs + l) >> 4 : byte_at(qs + l) & 0xF;
    if (FiveBit) q |= ((byte_at(blk + 16 + l) >> s) & 1) << 4;
    o.w[l] = static_cast<int8_t>(q);
  }
}

void decode_q6k(const std::byte* blk, int s, Sub32& o) {
  const auto* ql = reinterpret_cast<const uint8_t*>(blk);
  const float d = scalar_f16(blk + 208);
  o.scale[0] = d * static_cast<float>(static_cast<int8_t>(blk[192 + 2 * s]));
  o.scale[1] = d * static_cast<float>(static_cast<int8_t>(blk[192 + 2 * s + 1]));
  o.min[0] = o.min[1] = 0;
  for (int l = 0; l < 32; ++l) o.w[l] = static_cast<int8_t>(q6k_value(ql, ql + 128, 32 * s + l) - 32);
}

void decode_q3k(const std::byte* blk, int s, Sub32& o) {
  const float d = scalar_f16(blk + 108);
  for (int h = 0; h < 2; ++h) o.scale[h] = d * static_cast<float>(q3k_scale(blk + 96, 2 * s + h) - 32);
  o.min[0] = o.min[1] = 0;
  for (int l = 0; l < 32; ++l) o.w[l] = static_cast<int8_t>(q3k_value(blk, 32 * s + l));
}

void decode_q2k(const std::byte* blk, int s, Sub32& o) {
  const float d = scalar_f16(blk + 80), dmin = scalar_f16(blk + 82);
  for (int h = 0; h < 2; ++h) {
    const uint8_t sc = byte_at(blk + 2 * s + h);
    o.scale[h] = d * static_cast<float>(sc & 0xF);
    o.min[h] = -dmin * static_cast<float>(sc >> 4);
  }
  for (int l = 0; l < 32; ++l) o.w[l] = static_cast<int8_t>(q2k_bits(blk + 16, 32 * s + l));
}

// IQ4_NL, or IQ4_XS's sub-block s: levels of kIq4nlValues by nibble.
template <bool Xs>
void decode_iq4(const std::byte* blk, int s, Sub32& o) {
  o.scale[0] = o.scale[1] = scalar_f16(blk) * (Xs ? static_cast<float>(iq4xs_scale(blk, s) - 32) : 1.0f);
  o.min[0] = o.min[1] = 0;
  const std::byte* qs = Xs ? blk + 8 + 16 * s : blk + 2;
  for (int i = 0; i < 16; ++i) {
    o.w[i] = kIq4nlValues[byte_at(qs + i) & 0xF];
    o.w[i + 16] = kIq4nlValues[byte_at(qs + i) >> 4];
  }
}

template <void (*Decode)(const std::byte*, int, Sub32&), int Elems, int Bytes>
float impl_qdot(const std::byte* row, const Q8Block* x, int64_t n) {
  constexpr int subs = Elems / 32;
  float s = 0;
  Sub32 d;
  for (int64_t b = 0; b < n / 32; ++b) {
    Decode(row + (b / subs) * Bytes, static_cast<int>(b % subs), d);
    const float prod = d.scale[0] * static_cast<float>(dot16_i8(d.w, x[b].q)) +
                       d.scale[1] * static_cast<float>(dot16_i8(d.w + 16, x[b].q + 16));
    s += x[b].d * (prod + d.min[0] * static_cast<float>(x[b].sum[0]) + d.min[1] * static_cast<float>(x[b].sum[1]));
  }
  return s;
}

void impl_scale_add_f32(float* acc, float scale, float w, const std::byte* v, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v8f a = load_f32(acc + i) * scale + load_f32(v + 4 * i) * w;
    std::memcpy(acc + i, &a, sizeof a);
  }
  for (; i < n; ++i) {
    float x;
    std::memcpy(&x, v + 4 * i, 4);
    acc[i] = acc[i] * scale + w * x;
  }
}

void impl_scale_add_f16(float* acc, float scale, float w, const std::byte* v, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v8f a = load_f32(acc + i) * scale + f16x8_to_f32(v + 2 * i) * w;
    std::memcpy(acc + i, &a, sizeof a);
  }
  for (; i < n; ++i) acc[i] = acc[i] * scale + w * scalar_f16(v + 2 * i);
}

// Q8_0 values: 32 per block, scale first.
void impl_scale_add_q8_0(float* acc, float scale, float w, const std::byte* v, int64_t n) {
  for (int64_t b = 0; b < n / 32; ++b) {
    const std::byte* blk = v + b * 34;
    const float dw = scalar_f16(blk) * w;
    for (int g = 0; g < 4; ++g) {
      v8b q;
      std::memcpy(&q, blk + 2 + 8 * g, 8);
      float* a = acc + b * 32 + 8 * g;
      v8f r = load_f32(a) * scale + __builtin_convertvector(q, v8f) * dw;
      std::memcpy(a, &r, sizeof r);
    }
  }
}

// The KV cache's element types.
void impl_scale_add(float* acc, float scale, float w, const std::byte* v, DType v_type, int64_t n) {
  if (v_type == DType::F16) impl_scale_add_f16(acc, scale, w, v, n);
  else if (v_type == DType::Q8_0) impl_scale_add_q8_0(acc, scale, w, v, n);
  else impl_scale_add_f32(acc, scale, w, v, n);
}

[[maybe_unused]] QDotFn impl_qtable(DType t) {
  switch (t) {
    case DType::Q8_0: return impl_qdot<decode_q8_0, 32, 34>;
    case DType::Q4_0: return impl_qdot<decode_small<4, false>, 32, 18>;
    case DType::Q4_1: return impl_qdot<decode_small<4, true>, 32, 20>;
    case DType::Q5_0: return impl_qdot<decode_small<5, false>, 32, 22>;
    case DType::Q5_1: return impl_qdot<decode_small<5, true>, 32, 24>;
    case DType::Q4_K: return impl_qdot<decode_q45k<false>, 256, 144>;
    case DType::Q5_K: return impl_qdot<decode_q45k<true>, 256, 176>;
    case DType::Q6_K: return impl_qdot<decode_q6k, 256, 210>;
    case DType::Q3_K: return impl_qdot<decode_q3k, 256, 110>;
    case DType::Q2_K: return impl_qdot<decode_q2k, 256, 84>;
    case DType::IQ4_NL: return impl_qdot<decode_iq4<false>, 32, 18>;
    case DType::IQ4_XS: return impl_qdot<decode_iq4<true>, 256, 136>;
    default: return nullptr;
  }
}

// Attention on f32 tiles (model/forward.cpp converts each KV block once per
// pass and reuses it for every query that sees it).

// A KV row (f32, f16 or q8_0) as floats.
void impl_kv_to_f32(const std::byte* row, DType t, int64_t n, float* out) {
  int64_t k = 0;
  if (t == DType::F16) {
    for (; k + 8 <= n; k += 8) {
      const v8f f = f16x8_to_f32(row + 2 * k);
      std::memcpy(out + k, &f, sizeof f);
    }
    for (; k < n; ++k) out[k] = scalar_f16(row + 2 * k);
  } else if (t == DType::Q8_0) {
    for (; k + 32 <= n; k += 32) {
      const std::byte* blk = row + k / 32 * 34;
      const float d = scalar_f16(blk);
      for (int g = 0; g < 4; ++g) {
        v8b q;
        std::memcpy(&q, blk + 2 + 8 * g, 8);
        const v8f f = __builtin_convertvector(q, v8f) * d;
        std::memcpy(out + k + 8 * g, &f, sizeof f);
      }
    }
  } else {
    std::memcpy(out, row, static_cast<size_t>(n) * 4);
  }
}

// r[j] = the sum of a[j]'s eight lanes.
inline v8f sum_each(const v8f a[8]) {
  v8f b[4], c[2];
  for (int i = 0; i < 4; ++i)  // b[i] lanes: a[2i], a[2i+1] alternating, each the sum of two of its lanes
    b[i] = __builtin_shufflevector(a[2 * i], a[2 * i + 1], 0, 8, 1, 9, 4, 12, 5, 13) +
           __builtin_shufflevector(a[2 * i], a[2 * i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  for (int i = 0; i < 2; ++i)  // c[i]: a[4i..4i+3] in lanes 0-3 (low halves' sums) and 4-7 (high halves')
    c[i] = __builtin_shufflevector(b[2 * i], b[2 * i + 1], 0, 1, 8, 9, 4, 5, 12, 13) +
           __builtin_shufflevector(b[2 * i], b[2 * i + 1], 2, 3, 10, 11, 6, 7, 14, 15);
  return __builtin_shufflevector(c[0], c[1], 0, 1, 2, 3, 8, 9, 10, 11) +
         __builtin_shufflevector(c[0], c[1], 4, 5, 6, 7, 12, 13, 14, 15);
}

// Eight scores of query row q (hd values) against tile rows kt[j * hd], j < 8.
inline v8f eight_scores(const float* q, const float* kt, int64_t hd, int64_t hd8) {
  v8f a[8] = {};
  for (int64_t d = 0; d < hd8; d += 8) {
    const v8f x = load_f32(q + d);
    for (int j = 0; j < 8; ++j) a[j] += x * load_f32(kt + j * hd + d);
  }
  v8f s = sum_each(a);
  for (int64_t d = hd8; d < hd; ++d)
    for (int j = 0; j < 8; ++j) s[j] += q[d] * kt[j * hd + d];
  return s;
}

// scores[i * nk + j] = scale * (q_i . k_j): q_i at q + i * q_stride, k_j at
// k + j * hd. Eight keys at a time share each load of q and come out as one
// vector (sum_each), not eight horizontal sums; then four, then one.
void impl_attn_scores(const float* q, int64_t q_stride, int64_t nq, const float* k, int64_t nk, int64_t hd, float scale,
                      float* scores) {
  const int64_t hd8 = hd / 8 * 8;
  for (int64_t i = 0; i < nq; ++i) {
    const float* qi = q + i * q_stride;
    float* si = scores + i * nk;
    int64_t j = 0;
    for (; j + 8 <= nk; j += 8) {
      const v8f s = eight_scores(qi, k + j * hd, hd, hd8) * scale;
      std::memcpy(si + j, &s, sizeof s);
    }
    for (; j + 4 <= nk; j += 4) {
      const float* k0 = k + j * hd;
      v8f a0{}, a1{}, a2{}, a3{};
      int64_t d = 0;
      for (; d + 8 <= hd; d += 8) {
        const v8f x = load_f32(qi + d);
        a0 += x * load_f32(k0 + d);
        a1 += x * load_f32(k0 + hd + d);
        a2 += x * load_f32(k0 + 2 * hd + d);
        a3 += x * load_f32(k0 + 3 * hd + d);
      }
      float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
      for (; d < hd; ++d) s0 += qi[d] * k0[d], s1 += qi[d] * k0[hd + d], s2 += qi[d] * k0[2 * hd + d], s3 += qi[d] * k0[3 * hd + d];
      si[j] = s0 * scale, si[j + 1] = s1 * scale, si[j + 2] = s2 * scale, si[j + 3] = s3 * scale;
    }
    for (; j < nk; ++j) {
      const float* kj = k + j * hd;
      v8f a{};
      int64_t d = 0;
      for (; d + 8 <= hd; d += 8) a += load_f32(qi + d) * load_f32(kj + d);
      float s = hsum(a);
      for (; d < hd; ++d) s += qi[d] * kj[d];
      si[j] = s * scale;
    }
  }
}

// acc_i += sum_j w[i * nk + j] * v_j, for acc_i at acc + i * acc_stride and
// v_j at v + j * hd.
void impl_attn_accumulate(const float* w, int64_t nq, const float* v, int64_t nk, int64_t hd, float* acc, int64_t acc_stride) {
  for (int64_t i = 0; i < nq; ++i) {
    float* ai = acc + i * acc_stride;
    const float* wi = w + i * nk;
    int64_t d = 0;
    for (; d + 32 <= hd; d += 32) {  // four registers of the output row stay put over all keys
      v8f a0 = load_f32(ai + d), a1 = load_f32(ai + d + 8), a2 = load_f32(ai + d + 16), a3 = load_f32(ai + d + 24);
      for (int64_t j = 0; j < nk; ++j) {
        const float* vj = v + j * hd + d;
        const v8f wj = v8f{} + wi[j];
        a0 += wj * load_f32(vj), a1 += wj * load_f32(vj + 8), a2 += wj * load_f32(vj + 16), a3 += wj * load_f32(vj + 24);
      }
      std::memcpy(ai + d, &a0, sizeof a0), std::memcpy(ai + d + 8, &a1, sizeof a1);
      std::memcpy(ai + d + 16, &a2, sizeof a2), std::memcpy(ai + d + 24, &a3, sizeof a3);
    }
    for (; d + 8 <= hd; d += 8) {
      v8f a = load_f32(ai + d);
      for (int64_t j = 0; j < nk; ++j) a += (v8f{} + wi[j]) * load_f32(v + j * hd + d);
      std::memcpy(ai + d, &a, sizeof a);
    }
    for (; d < hd; ++d)
      for (int64_t j = 0; j < nk; ++j) ai[d] += wi[j] * v[j * hd + d];
  }
}

[[maybe_unused]] DotFn impl_table(DType t) {
  switch (t) {
    case DType::F32: return impl_dot_f32;
    case DType::F16: return impl_dot_f16;
    case DType::BF16: return impl_dot_bf16;
    case DType::Q8_0: return impl_dot_q8_0;
    case DType::Q4_0: return impl_dot_q4_0;
    default: return nullptr;
  }
}

}  // namespace
}  // namespace umi::cpu
