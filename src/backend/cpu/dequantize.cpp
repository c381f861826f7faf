// dequantize(): every supported block format to floats, written straight
// from the layouts in quant_blocks.h. This is the reference the fast dot
// products are tested against, so it shares no code with them.
#include <stdexcept>
#include <string>

#include "backend/cpu/dot.h"
#include "backend/cpu/half.h"
#include "backend/cpu/quant_blocks.h"

namespace umi::cpu {

namespace {

float f16_at(const std::byte* p) { return f16_to_f32(load_le16(p)); }
uint8_t u8_at(const std::byte* p) { return static_cast<uint8_t>(*p); }

// The 32-value formats: `bits` 4 or 5, `has_min` for the _1 variants.
void dequantize_small(const std::byte* blk, float* out, int bits, bool has_min) {
  const float d = f16_at(blk);
  const float m = has_min ? f16_at(blk + 2) : 0.0f;
  const std::byte* p = blk + (has_min ? 4 : 2);
  const uint32_t qh = bits == 5 ? load_le32(p) : 0;
  const std::byte* qs = p + (bits == 5 ? 4 : 0);
  // Without a min the values are centred: 4-bit q-8, 5-bit q-16.
  const int centre = has_min ? 0 : (bits == 5 ? 16 : 8);
  for (int i = 0; i < 16; ++i) {
    int lo = u8_at(qs + i) & 0xF, hi = u8_at(qs + i) >> 4;
    if (bits == 5) lo |= static_cast<int>((qh >> i) & 1) << 4, hi |= static_cast<int>((qh >> (i + 16)) & 1) << 4;
    out[i] = d * static_cast<float>(lo - centre) + m;
    out[i + 16] = d * static_cast<float>(hi - centre) + m;
  }
}

void dequantize_q45k(const std::byte* blk, float* out, bool five_bit) {
  const float d = f16_at(blk), dmin = f16_at(blk + 2);
  uint8_t sc[8], m[8];
  unpack_k_scales(blk + 4, sc, m);
  const std::byte* qh = blk + 16;
  const std::byte* qs = blk + (five_bit ? 48 : 16);
  for (int s = 0; s < 8; ++s)
    for (int l = 0; l < 32; ++l) {
      const uint8_t byte = u8_at(qs + 32 * (s / 2) + l);
      int q = s % 2 ? byte >> 4 : byte & 0xF;
      if (five_bit) q |= ((u8_at(qh + l) >> s) & 1) << 4;
      out[32 * s + l] = d * sc[s] * static_cast<float>(q) - dmin * m[s];
    }
}

void dequantize_q6k(const std::byte* blk, float* out) {
  const auto* ql = reinterpret_cast<const uint8_t*>(blk);
  const auto* qh = ql + 128;
  const float d = f16_at(blk + 208);
  for (int i = 0; i < 256; ++i) {
    const auto scale = static_cast<int8_t>(u8_at(blk + 192 + i / 16));
    out[i] = d * static_cast<float>(scale) * static_cast<float>(q6k_value(ql, qh, i) - 32);
  }
}

void dequantize_q3k(const std::byte* blk, float* out) {
  const float d = f16_at(blk + 108);
  for (int i = 0; i < 256; ++i) out[i] = d * static_cast<float>(q3k_scale(blk + 96, i / 16) - 32) * static_cast<float>(q3k_value(blk, i));
}

void dequantize_q2k(const std::byte* blk, float* out) {
  const float d = f16_at(blk + 80), dmin = f16_at(blk + 82);
  for (int i = 0; i < 256; ++i) {
    const uint8_t sc = u8_at(blk + i / 16);
    out[i] = d * static_cast<float>(sc & 0xF) * static_cast<float>(q2k_bits(blk + 16, i)) - dmin * static_cast<float>(sc >> 4);
  }
}

// IQ4_NL's 16 bytes of nibbles at qs with scale d: 32 values.
void dequantize_iq4(const std::byte* qs, float d, float* out) {
  for (int i = 0; i < 16; ++i) {
    out[i] = d * kIq4nlValues[u8_at(qs + i) & 0xF];
    out[i + 16] = d * kIq4nlValues[u8_at(qs + i) >> 4];
  }
}

void dequantize_iq4xs(const std::byte* blk, float* out) {
  const float d = f16_at(blk);
  for (int s = 0; s < 8; ++s) dequantize_iq4(blk + 8 + 16 * s, d * static_cast<float>(iq4xs_scale(blk, s) - 32), out + 32 * s);
}

}  // namespace

void dequantize(DType t, const std::byte* row, float* out, int64_t n) {
  const DTypeInfo& info = dtype_info(t);
  const int64_t blocks = n / info.block_elems;
  for (int64_t b = 0; b < blocks; ++b) {
    const std::byte* blk = row + b * info.block_bytes;
    float* o = out + b * info.block_elems;
    switch (t) {
      case DType::F32: std::memcpy(o, blk, 4); break;
      case DType::F16: *o = f16_at(blk); break;
      case DType::BF16: *o = bf16_to_f32(load_le16(blk)); break;
      case DType::Q8_0:
        for (int i = 0; i < 32; ++i) o[i] = f16_at(blk) * static_cast<float>(static_cast<int8_t>(blk[2 + i]));
        break;
      case DType::Q4_0: dequantize_small(blk, o, 4, false); break;
      case DType::Q4_1: dequantize_small(blk, o, 4, true); break;
      case DType::Q5_0: dequantize_small(blk, o, 5, false); break;
      case DType::Q5_1: dequantize_small(blk, o, 5, true); break;
      case DType::Q4_K: dequantize_q45k(blk, o, false); break;
      case DType::Q5_K: dequantize_q45k(blk, o, true); break;
      case DType::Q6_K: dequantize_q6k(blk, o); break;
      case DType::Q3_K: dequantize_q3k(blk, o); break;
      case DType::Q2_K: dequantize_q2k(blk, o); break;
      case DType::IQ4_NL: dequantize_iq4(blk + 2, f16_at(blk), o); break;
      case DType::IQ4_XS: dequantize_iq4xs(blk, o); break;
      default: throw std::runtime_error("dequantize: unsupported dtype " + std::string(to_string(t)));
    }
  }
}

}  // namespace umi::cpu
