#include "backend/cpu/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "backend/cpu/half.h"
#include "backend/cpu/quant_blocks.h"

namespace umi::cpu {

namespace {

void put16(std::byte* p, uint16_t v) { std::memcpy(p, &v, 2); }
void put32(std::byte* p, uint32_t v) { std::memcpy(p, &v, 4); }
float f16_round(float v) { return f16_to_f32(f32_to_f16(v)); }
int nearest(float v) { return static_cast<int>(std::lround(v)); }

// The value of largest magnitude, with its sign.
float signed_max(const float* x, int n) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), max = x[i];
  return max;
}

// d = max / -8, q = clamp(x/d + 8.5) as ggml's quantize_row_q4_0_ref; the
// 5-bit form the same with 16 levels a side.
void quantize_centred(const float* x, int bits, std::byte* blk) {
  const int half = 1 << (bits - 1), top = (1 << bits) - 1;
  const float d = signed_max(x, 32) / static_cast<float>(-half), id = d != 0.0f ? 1.0f / d : 0.0f;
  put16(blk, f32_to_f16(d));
  uint8_t q[32];
  for (int i = 0; i < 32; ++i) q[i] = static_cast<uint8_t>(std::min(top, static_cast<int>(x[i] * id + static_cast<float>(half) + 0.5f)));
  std::byte* qs = blk + (bits == 5 ? 6 : 2);
  uint32_t qh = 0;
  for (int i = 0; i < 16; ++i) {
    qs[i] = static_cast<std::byte>((q[i] & 0xF) | ((q[i + 16] & 0xF) << 4));
    qh |= static_cast<uint32_t>((q[i] >> 4) & 1) << i | static_cast<uint32_t>((q[i + 16] >> 4) & 1) << (i + 16);
  }
  if (bits == 5) put32(blk + 2, qh);
}

// x = d*q + m with m the block's minimum: ggml's q4_1 / q5_1.
void quantize_with_min(const float* x, int bits, std::byte* blk) {
  const int top = (1 << bits) - 1;
  const float lo = *std::min_element(x, x + 32), hi = *std::max_element(x, x + 32);
  const float d = (hi - lo) / static_cast<float>(top), id = d != 0.0f ? 1.0f / d : 0.0f;
  put16(blk, f32_to_f16(d));
  put16(blk + 2, f32_to_f16(lo));
  uint8_t q[32];
  for (int i = 0; i < 32; ++i) q[i] = static_cast<uint8_t>(std::clamp(static_cast<int>((x[i] - lo) * id + 0.5f), 0, top));
  std::byte* qs = blk + (bits == 5 ? 8 : 4);
  uint32_t qh = 0;
  for (int i = 0; i < 16; ++i) {
    qs[i] = static_cast<std::byte>((q[i] & 0xF) | ((q[i + 16] & 0xF) << 4));
    qh |= static_cast<uint32_t>((q[i] >> 4) & 1) << i | static_cast<uint32_t>((q[i + 16] >> 4) & 1) << (i + 16);
  }
  if (bits == 5) put32(blk + 4, qh);
}

// Q4_K / Q5_K: each sub-block of 32 gets scale (max - min) / levels and a
// non-negative min offset; both are then stored as 6-bit multiples of the
// block's d and dmin, and the values re-quantized against the stored ones.
// (Simpler than ggml's iterative search; its error is a little larger.)
void quantize_q45k(const float* x, bool five_bit, std::byte* blk) {
  const int top = five_bit ? 31 : 15;
  float scale[8], offset[8];
  for (int s = 0; s < 8; ++s) {
    const float* xs = x + 32 * s;
    const float lo = std::min(0.0f, *std::min_element(xs, xs + 32)), hi = *std::max_element(xs, xs + 32);
    scale[s] = (hi - lo) / static_cast<float>(top);
    offset[s] = -lo;
  }
  const float max_scale = *std::max_element(scale, scale + 8), max_offset = *std::max_element(offset, offset + 8);
  const float d = f16_round(max_scale / 63.0f), dmin = f16_round(max_offset / 63.0f);
  uint8_t sc[8], m[8];
  for (int s = 0; s < 8; ++s) {
    sc[s] = static_cast<uint8_t>(d > 0 ? std::clamp(nearest(scale[s] / d), 0, 63) : 0);
    m[s] = static_cast<uint8_t>(dmin > 0 ? std::clamp(nearest(offset[s] / dmin), 0, 63) : 0);
  }
  put16(blk, f32_to_f16(d));
  put16(blk + 2, f32_to_f16(dmin));
  pack_k_scales(sc, m, blk + 4);
  uint8_t q[256];
  for (int s = 0; s < 8; ++s) {
    const float step = d * sc[s], off = dmin * m[s];
    for (int l = 0; l < 32; ++l)
      q[32 * s + l] = static_cast<uint8_t>(step > 0 ? std::clamp(nearest((x[32 * s + l] + off) / step), 0, top) : 0);
  }
  std::byte* qh = blk + 16;
  std::byte* qs = blk + (five_bit ? 48 : 16);
  if (five_bit) std::memset(qh, 0, 32);
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      const uint8_t a = q[64 * c + l], b = q[64 * c + 32 + l];
      qs[32 * c + l] = static_cast<std::byte>((a & 0xF) | ((b & 0xF) << 4));
      if (five_bit) qh[l] |= static_cast<std::byte>(((a >> 4) << (2 * c)) | ((b >> 4) << (2 * c + 1)));
    }
}

// Q6_K: a signed scale per 16 values (largest magnitude -> -32), stored as
// int8 multiples of the block's d.
void quantize_q6k(const float* x, std::byte* blk) {
  float scale[16];
  for (int g = 0; g < 16; ++g) scale[g] = signed_max(x + 16 * g, 16) / -32.0f;
  float max_scale = 0;
  for (float s : scale)
    if (std::fabs(s) > std::fabs(max_scale)) max_scale = s;
  const float d = f16_round(max_scale / -128.0f);
  auto* ql = reinterpret_cast<uint8_t*>(blk);
  uint8_t* qh = ql + 128;
  std::memset(blk, 0, 192);
  for (int g = 0; g < 16; ++g) {
    const int sc = d != 0.0f ? std::clamp(nearest(scale[g] / d), -128, 127) : 0;
    blk[192 + g] = static_cast<std::byte>(static_cast<int8_t>(sc));
    const float step = d * static_cast<float>(sc);
    for (int l = 0; l < 16; ++l) {
      const int i = 16 * g + l;
      const int q = (step != 0.0f ? std::clamp(nearest(x[i] / step), -32, 31) : 0) + 32;
      // Where q6k_value (quant_blocks.h) reads element i from.
      const int half = i / 128, w = i % 128, grp = w / 32, pos = w % 32;
      ql[64 * half + pos + 32 * (grp & 1)] |= static_cast<uint8_t>(grp < 2 ? (q & 0xF) : (q & 0xF) << 4);
      qh[32 * half + pos] |= static_cast<uint8_t>((q >> 4) << (2 * grp));
    }
  }
  put16(blk + 208, f32_to_f16(d));
}

// Q3_K: a signed scale per 16 values (largest magnitude -> -4), stored as
// 6-bit multiples (sc - 32) of the block's d; q = -4..3 as two bits in qs and
// a high bit in hmask (set: q = bits, clear: bits - 4). Simpler than ggml's
// search, as quantize_q45k.
void quantize_q3k(const float* x, std::byte* blk) {
  float scale[16], max_scale = 0;
  for (int g = 0; g < 16; ++g) {
    scale[g] = signed_max(x + 16 * g, 16) / -4.0f;
    if (std::fabs(scale[g]) > std::fabs(max_scale)) max_scale = scale[g];
  }
  const float d = f16_round(max_scale / -32.0f);
  std::memset(blk, 0, 110);
  for (int g = 0; g < 16; ++g) {
    const int sc = d != 0.0f ? std::clamp(nearest(scale[g] / d), -32, 31) : 0;
    const int v = sc + 32;  // where q3k_scale (quant_blocks.h) reads it from
    blk[96 + (g < 8 ? g : g - 8)] |= static_cast<std::byte>(g < 8 ? v & 0xF : (v & 0xF) << 4);
    blk[96 + 8 + g % 4] |= static_cast<std::byte>((v >> 4) << (2 * (g / 4)));
    const float step = d * static_cast<float>(sc);
    for (int l = 0; l < 16; ++l) {
      const int i = 16 * g + l, u = (step != 0.0f ? std::clamp(nearest(x[i] / step), -4, 3) : 0) + 4;
      blk[32 + 32 * (i / 128) + i % 32] |= static_cast<std::byte>((u & 3) << (2 * (i % 128 / 32)));
      blk[i % 32] |= static_cast<std::byte>((u >> 2) << (i / 32));
    }
  }
  put16(blk + 108, f32_to_f16(d));
}

// Q2_K: per 16 values a scale (max - min) / 3 and a non-negative min
// offset, both 4-bit multiples of the block's d and dmin; q = 0..3.
void quantize_q2k(const float* x, std::byte* blk) {
  float scale[16], offset[16];
  for (int g = 0; g < 16; ++g) {
    const float* xg = x + 16 * g;
    const float lo = std::min(0.0f, *std::min_element(xg, xg + 16)), hi = *std::max_element(xg, xg + 16);
    scale[g] = (hi - lo) / 3.0f;
    offset[g] = -lo;
  }
  const float d = f16_round(*std::max_element(scale, scale + 16) / 15.0f), dmin = f16_round(*std::max_element(offset, offset + 16) / 15.0f);
  std::memset(blk, 0, 84);
  for (int g = 0; g < 16; ++g) {
    const int sc = d > 0 ? std::clamp(nearest(scale[g] / d), 0, 15) : 0, m = dmin > 0 ? std::clamp(nearest(offset[g] / dmin), 0, 15) : 0;
    blk[g] = static_cast<std::byte>(sc | m << 4);
    const float step = d * static_cast<float>(sc), off = dmin * static_cast<float>(m);
    for (int l = 0; l < 16; ++l) {
      const int i = 16 * g + l, q = step > 0 ? std::clamp(nearest((x[i] + off) / step), 0, 3) : 0;
      blk[16 + 32 * (i / 128) + i % 32] |= static_cast<std::byte>(q << (2 * (i % 128 / 32)));
    }
  }
  put16(blk + 80, f32_to_f16(d));
  put16(blk + 82, f32_to_f16(dmin));
}

// The IQ4 level nearest v (the levels ascend): the first not below v, or
// the one before it.
int nearest_iq4(float v) {
  const int8_t* above = std::lower_bound(kIq4nlValues, kIq4nlValues + 16, v, [](int8_t level, float x) { return level < x; });
  if (above == kIq4nlValues) return 0;
  if (above == kIq4nlValues + 16) return 15;
  const int k = static_cast<int>(above - kIq4nlValues);
  return v - kIq4nlValues[k - 1] <= kIq4nlValues[k] - v ? k - 1 : k;
}

// The least-squares scale of 32 values over IQ4 levels, tried from 15
// starting scales around max / -127 as ggml's quantize_row_iq4_nl_impl
// does (unweighted here): each start picks levels, the scale that fits
// those levels best is kept if it explains more of x.
float iq4_scale(const float* x) {
  const float max = signed_max(x, 32);
  if (max == 0.0f) return 0.0f;
  float best_d = 0, best = -1;
  for (int attempt = -7; attempt <= 7; ++attempt) {
    const float id = (static_cast<float>(attempt) + kIq4nlValues[0]) / max;
    double sumqx = 0, sumq2 = 0;
    for (int i = 0; i < 32; ++i) {
      const double q = kIq4nlValues[nearest_iq4(x[i] * id)];
      sumqx += q * x[i], sumq2 += q * q;
    }
    if (sumq2 > 0 && sumqx * sumqx / sumq2 > best) best = static_cast<float>(sumqx * sumqx / sumq2), best_d = static_cast<float>(sumqx / sumq2);
  }
  return best_d;
}

// 32 values as IQ4 nibbles at qs against the stored scale d.
void put_iq4_nibbles(const float* x, float d, std::byte* qs) {
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < 16; ++i)
    qs[i] = static_cast<std::byte>(nearest_iq4(x[i] * id) | nearest_iq4(x[i + 16] * id) << 4);
}

void quantize_iq4nl(const float* x, std::byte* blk) {
  const float d = f16_round(iq4_scale(x));
  put16(blk, f32_to_f16(d));
  put_iq4_nibbles(x, d, blk + 2);
}

// IQ4_XS: each sub-block's own best scale (iq4_scale), stored as a 6-bit
// multiple (ls - 32) of the block's d (largest magnitude -> -32), then the
// values against the stored scale.
void quantize_iq4xs(const float* x, std::byte* blk) {
  float scale[8], max_scale = 0;
  for (int s = 0; s < 8; ++s) {
    scale[s] = iq4_scale(x + 32 * s);
    if (std::fabs(scale[s]) > std::fabs(max_scale)) max_scale = scale[s];
  }
  const float d = f16_round(max_scale / -32.0f);
  std::memset(blk, 0, 136);
  uint16_t high = 0;
  for (int s = 0; s < 8; ++s) {
    const int ls = (d != 0.0f ? std::clamp(nearest(scale[s] / d), -32, 31) : 0) + 32;
    blk[4 + s / 2] |= static_cast<std::byte>((ls & 0xF) << (4 * (s % 2)));
    high = static_cast<uint16_t>(high | (ls >> 4) << (2 * s));
    put_iq4_nibbles(x + 32 * s, d * static_cast<float>(ls - 32), blk + 8 + 16 * s);
  }
  put16(blk, f32_to_f16(d));
  put16(blk + 2, high);
}

}  // namespace

bool quantize_supports(DType t) {
  switch (t) {
    case DType::F32: case DType::F16: case DType::BF16: case DType::Q8_0: case DType::Q4_0: case DType::Q4_1:
    case DType::Q5_0: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: case DType::Q3_K:
    case DType::Q2_K: case DType::IQ4_NL: case DType::IQ4_XS: return true;
    default: return false;
  }
}

void quantize_row(DType t, const float* x, int64_t n, std::byte* out) {
  if (t == DType::F32) return std::memcpy(out, x, static_cast<size_t>(n) * 4), void();
  const DTypeInfo& info = dtype_info(t);
  for (int64_t b = 0; b < n / info.block_elems; ++b) {
    const float* xb = x + b * info.block_elems;
    std::byte* blk = out + b * info.block_bytes;
    switch (t) {
      case DType::F16: put16(blk, f32_to_f16(*xb)); break;
      case DType::BF16: put16(blk, f32_to_bf16(*xb)); break;
      case DType::Q8_0: {
        // d = max|x| / 127, q = round(x / d): as ggml's quantize_row_q8_0_ref.
        float amax = 0;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        put16(blk, f32_to_f16(d));
        for (int i = 0; i < 32; ++i) blk[2 + i] = static_cast<std::byte>(static_cast<int8_t>(nearest(xb[i] * id)));
        break;
      }
      case DType::Q4_0: quantize_centred(xb, 4, blk); break;
      case DType::Q5_0: quantize_centred(xb, 5, blk); break;
      case DType::Q4_1: quantize_with_min(xb, 4, blk); break;
      case DType::Q5_1: quantize_with_min(xb, 5, blk); break;
      case DType::Q4_K: quantize_q45k(xb, false, blk); break;
      case DType::Q5_K: quantize_q45k(xb, true, blk); break;
      case DType::Q6_K: quantize_q6k(xb, blk); break;
      case DType::Q3_K: quantize_q3k(xb, blk); break;
      case DType::Q2_K: quantize_q2k(xb, blk); break;
      case DType::IQ4_NL: quantize_iq4nl(xb, blk); break;
      case DType::IQ4_XS: quantize_iq4xs(xb, blk); break;
      default: throw std::invalid_argument("quantize_row: unsupported dtype " + std::string(to_string(t)));
    }
  }
}

}  // namespace umi::cpu
