// The GGML block formats umi reads in place, as stored in GGUF files
// (little-endian; "f16" is an IEEE half). Values per block and bytes:
//   Q8_0  32  34: f16 d, int8 q[32]                         x = d*q
//   Q4_0  32  18: f16 d, u8 qs[16]                          x = d*(q-8)
//   Q4_1  32  20: f16 d, f16 m, u8 qs[16]                   x = d*q + m
//   Q5_0  32  22: f16 d, u32 qh, u8 qs[16]                  x = d*(q-16)
//   Q5_1  32  24: f16 d, f16 m, u32 qh, u8 qs[16]           x = d*q + m
// In the 32-value formats element i < 16 is the low nibble of qs[i], element
// i + 16 the high nibble; for the 5-bit ones bit i of qh is bit 4 of element i.
//   Q4_K 256 144: f16 d, f16 dmin, u8 scales[12], u8 qs[128]
//   Q5_K 256 176: f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]
//     8 sub-blocks of 32 with 6-bit scale sc and min m: x = d*sc*q - dmin*m.
//     Sub-block 2c takes the low nibbles of qs[32c..32c+31], 2c+1 the high
//     ones; Q5_K's bit 4 of element l of sub-block s is bit s of qh[l].
//   Q6_K 256 210: u8 ql[128], u8 qh[64], int8 scales[16], f16 d
//     x = d*scales[i/16]*(q-32); see q6k_value for where q's bits live.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace umi::cpu {

// The 8 six-bit scales and mins of a Q4_K/Q5_K block packed in 12 bytes:
// bytes 0-3 hold sc[0..3] and the top bits of sc[4..7], bytes 4-7 m[0..3]
// and the top bits of m[4..7], bytes 8-11 the low nibbles of sc/m[4..7].
inline void unpack_k_scales(const std::byte* packed, uint8_t sc[8], uint8_t m[8]) {
  uint8_t q[12];
  std::memcpy(q, packed, 12);
  for (int j = 0; j < 4; ++j) {
    sc[j] = q[j] & 63;
    m[j] = q[j + 4] & 63;
    sc[j + 4] = static_cast<uint8_t>((q[j + 8] & 0xF) | ((q[j] >> 6) << 4));
    m[j + 4] = static_cast<uint8_t>((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
  }
}

inline void pack_k_scales(const uint8_t sc[8], const uint8_t m[8], std::byte* packed) {
  uint8_t q[12];
  for (int j = 0; j < 4; ++j) {
    q[j] = static_cast<uint8_t>((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
    q[j + 4] = static_cast<uint8_t>((m[j] & 63) | ((m[j + 4] >> 4) << 6));
    q[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
  }
  std::memcpy(packed, q, 12);
}

// Element i (0..255) of a Q6_K block as 0..63: each 128-value half has 64 ql
// bytes (low nibbles for its values 0-63, high nibbles for 64-127) and 32 qh
// bytes (2 bits per value: value l + 32g uses bits 2g..2g+1 of qh[l]).
inline int q6k_value(const uint8_t* ql, const uint8_t* qh, int i) {
  const int half = i / 128, w = i % 128, g = w / 32, l = w % 32;
  const uint8_t lo = ql[64 * half + l + 32 * (g & 1)];
  const int nib = g < 2 ? (lo & 0xF) : (lo >> 4);
  return nib | (((qh[32 * half + l] >> (2 * g)) & 3) << 4);
}

inline uint16_t load_le16(const std::byte* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

inline uint32_t load_le32(const std::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace umi::cpu
