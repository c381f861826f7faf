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
//   Q3_K 256 110: u8 hmask[32], u8 qs[64], u8 scales[12], f16 d
//     x = d*(sc[i/16]-32)*q, q = 2 bits from qs minus 4 where the hmask bit
//     is clear (-4..3); sc 6-bit (q3k_scale).
//   Q2_K 256  84: u8 scales[16], u8 qs[64], f16 d, f16 dmin
//     x = d*(scales[i/16] & 15)*q - dmin*(scales[i/16] >> 4), q 2 bits (0..3).
//     Q2_K and Q3_K keep value i's two bits at bits 2((i%128)/32) of
//     qs[32(i/128) + i%32] (q2k_bits); Q3_K's high bit is bit i/32 of
//     hmask[i%32].
//   IQ4_NL 32 18: f16 d, u8 qs[16]       x = d*kIq4nlValues[nibble]
//   IQ4_XS 256 136: f16 d, u16 scales_h, u8 scales_l[4], u8 qs[128]
//     sub-block s of 32 (16 bytes of nibbles at qs + 16s, as IQ4_NL's):
//     x = d*(ls-32)*kIq4nlValues[nibble], ls 6-bit (iq4xs_scale).
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

// IQ4_NL's and IQ4_XS's sixteen levels (ggml's kvalues_iq4nl): a nibble
// indexes them; they are denser near zero, where most weights are.
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// Q3_K's 6-bit scale of values 16 is..16 is + 15 (0..63; the value's scale
// is d * (this - 32)): low four bits from byte is % 8 of the first eight
// (low nibble for is < 8, high one above), top two from byte 8 + is % 4,
// bits 2 (is / 4)..2 (is / 4) + 1.
inline int q3k_scale(const std::byte* scales, int is) {
  const auto byte = [&](int i) { return static_cast<int>(static_cast<uint8_t>(scales[i])); };
  const int low = is < 8 ? byte(is) & 0xF : byte(is - 8) >> 4;
  return low | (((byte(8 + is % 4) >> (2 * (is / 4))) & 3) << 4);
}

// The two bits of value i (0..255) of a Q2_K or Q3_K block's qs.
inline int q2k_bits(const std::byte* qs, int i) {
  return (static_cast<uint8_t>(qs[32 * (i / 128) + i % 32]) >> (2 * (i % 128 / 32))) & 3;
}

// Value i (0..255) of a Q3_K block as its q (-4..3): the two bits, less 4
// where its hmask bit is clear.
inline int q3k_value(const std::byte* blk, int i) {
  return q2k_bits(blk + 32, i) - ((static_cast<uint8_t>(blk[i % 32]) >> (i / 32)) & 1 ? 0 : 4);
}

// IQ4_XS sub-block s's 6-bit scale (0..63; the values' scale is d * (this - 32)).
inline int iq4xs_scale(const std::byte* blk, int s) {
  const int high = (static_cast<int>(static_cast<uint8_t>(blk[2])) | static_cast<int>(static_cast<uint8_t>(blk[3])) << 8) >> (2 * s) & 3;
  return ((static_cast<uint8_t>(blk[4 + s / 2]) >> (4 * (s % 2))) & 0xF) | high << 4;
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
