// Device-side reading of the K-quant blocks (256 values each) as they sit
// in device memory (quant_layout.h): Q4_K (144 bytes) and Q5_K (176) in the
// file's layout, whose blocks are multiples of 16 bytes with the quants at
// 16-byte offsets; Q6_K (210 bytes, 2-byte aligned in the file) split on
// upload into 208 bytes of quants (ql[128], qh[64], int8 scales[16]) and an
// f16 scale array after all of them.
//
// Two readers: one value at a time (embedding rows, the f16 dequantization
// for prefill, the generic product), and the integer dot products of the
// decode matvec (quant_matvec.cu), which take a block in "tasks": Q4_K/Q5_K
// a pair of 32-value sub-blocks (64 values: 32 bytes of nibbles), Q6_K a
// half (128 values), each against the q8 activation blocks it covers.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

namespace umi::cuda {

constexpr int kQ4KBytes = 144, kQ5KBytes = 176, kQ6KQuantBytes = 208;

__device__ inline float half_at(const unsigned char* p) { return __half2float(*reinterpret_cast<const __half*>(p)); }

// Scale and min of sub-block j (0..7) from the 12 packed bytes of a Q4_K/Q5_K
// block: 6 bits each, the last four sub-blocks' top two bits stored in the
// first eight bytes' top bits (ggml's get_scale_min_k4).
__device__ inline void kscale_min(const unsigned char* s, int j, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// The same for sub-blocks 2g and 2g+1 at once from the three words of scale
// bytes (a: bytes 0-3, b: 4-7, c: 8-11), without indexing (no local memory).
__device__ inline void kscale_min_pair(unsigned a, unsigned b, unsigned c, int g, int (&sc)[2], int (&m)[2]) {
  const int s = 16 * (g & 1);
  unsigned scs, ms;
  if (g < 2) {
    scs = (a >> s) & 0x3F3Fu;
    ms = (b >> s) & 0x3F3Fu;
  } else {
    scs = ((c >> s) & 0x0F0Fu) | (((a >> s) >> 2) & 0x3030u);
    ms = (((c >> s) >> 4) & 0x0F0Fu) | (((b >> s) >> 2) & 0x3030u);
  }
  sc[0] = static_cast<int>(scs & 0xFF);
  sc[1] = static_cast<int>(scs >> 8);
  m[0] = static_cast<int>(ms & 0xFF);
  m[1] = static_cast<int>(ms >> 8);
}

// Value i (0..255) of a block. Q4_K/Q5_K: d * sc * q - dmin * m with q the
// nibble (plus 16 from qh for Q5_K); value 64g + 32h + l is nibble h of
// qs[32g + l]. Q6_K: d * scale * (q - 32), q six bits from ql and qh.
__device__ inline float q45k_value(const unsigned char* b, int i, bool five) {
  const int g = i >> 6, hi = (i >> 5) & 1, l = i & 31;
  const unsigned char* qs = b + (five ? 48 : 16);
  int q = (qs[32 * g + l] >> (4 * hi)) & 15;
  if (five) q |= ((b[16 + l] >> (2 * g + hi)) & 1) << 4;
  int sc, m;
  kscale_min(b + 4, 2 * g + hi, sc, m);
  const float d1 = half_at(b) * static_cast<float>(sc), m1 = half_at(b + 2) * static_cast<float>(m);
  return d1 * static_cast<float>(q) - m1;
}

__device__ inline float q6k_value(const unsigned char* q, float d, int i) {
  const int h = i >> 7, k = (i >> 5) & 3, l = i & 31;
  const int lo = q[64 * h + 32 * (k & 1) + l], hb = (q[128 + 32 * h + l] >> (2 * k)) & 3;
  const int v = ((k >= 2 ? lo >> 4 : lo & 15) | (hb << 4)) - 32;
  const int sc = static_cast<signed char>(q[192 + 8 * h + 2 * k + l / 16]);
  return d * static_cast<float>(sc) * static_cast<float>(v);
}

// ---- integer dot products against q8 activations (q8_rows.h) ---------------

__device__ inline int4 ld16(const void* p) { return __ldg(reinterpret_cast<const int4*>(p)); }
__device__ inline int word(const int4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// Q4_K and Q5_K: task g (0..3) of a block is sub-blocks 2g (low nibbles)
// and 2g + 1 (high nibbles) against activation blocks 2g and 2g + 1.
template <bool Five>
struct KQuant45 {
  static constexpr int kTasks = 4, kValues = 64, kUnroll = Five ? 2 : 4;
  struct Loaded {
    int4 head;   // d, dmin | scales 0-3 | 4-7 | 8-11
    int4 q[2];   // 32 bytes of nibbles
    int4 h[2];   // Q5_K: the 32 bytes of fifth bits (bit 2g: low, 2g+1: high)
    int g;
  };
  static __device__ Loaded load(const void* w, int64_t /*total_blocks*/, int64_t block, int g) {
    const unsigned char* b = static_cast<const unsigned char*>(w) + block * (Five ? kQ5KBytes : kQ4KBytes);
    Loaded t;
    t.head = ld16(b);
    const unsigned char* qs = b + (Five ? 48 : 16) + 32 * g;
    t.q[0] = ld16(qs);
    t.q[1] = ld16(qs + 16);
    if constexpr (Five) {
      t.h[0] = ld16(b + 16);
      t.h[1] = ld16(b + 32);
    }
    t.g = g;
    return t;
  }
  // xq: the task's first activation block (64 int8), xds its two (d, sum).
  static __device__ float dot(const Loaded& t, const int8_t* xq, const float2* xds) {
    const int4 x[4] = {ld16(xq), ld16(xq + 16), ld16(xq + 32), ld16(xq + 48)};
    int s[2] = {0, 0};
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int q = word(t.q[i / 4], i % 4);
      int lo = q & 0x0F0F0F0F, hi = (q >> 4) & 0x0F0F0F0F;
      if constexpr (Five) {
        const int h = word(t.h[i / 4], i % 4);
        lo |= ((h >> (2 * t.g)) & 0x01010101) << 4;
        hi |= ((h >> (2 * t.g + 1)) & 0x01010101) << 4;
      }
      s[0] = __dp4a(lo, word(x[i / 4], i % 4), s[0]);
      s[1] = __dp4a(hi, word(x[2 + i / 4], i % 4), s[1]);
    }
    int sc[2], m[2];
    kscale_min_pair(static_cast<unsigned>(t.head.y), static_cast<unsigned>(t.head.z), static_cast<unsigned>(t.head.w), t.g, sc, m);
    const __half2 dm = *reinterpret_cast<const __half2*>(&t.head.x);
    const float d = __low2float(dm), dmin = __high2float(dm);
    float r = 0.f;
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const float2 ds = xds[j];
      r += ds.x * (d * static_cast<float>(sc[j] * s[j]) - dmin * static_cast<float>(m[j]) * ds.y);
    }
    return r;
  }
};

// Q6_K: task h (0, 1) of a block is its half of 128 values: ql[64h..],
// qh[32h..], scales[8h..], against activation blocks 4h .. 4h + 3.
struct KQuant6 {
  static constexpr int kTasks = 2, kValues = 128, kUnroll = 2;
  struct Loaded {
    int4 ql[4], qh[2];
    int2 sc;
    float d;
  };
  static __device__ Loaded load(const void* w, int64_t total_blocks, int64_t block, int h) {
    const unsigned char* base = static_cast<const unsigned char*>(w);
    const unsigned char* b = base + block * kQ6KQuantBytes;
    Loaded t;
#pragma unroll
    for (int i = 0; i < 4; ++i) t.ql[i] = ld16(b + 64 * h + 16 * i);
    t.qh[0] = ld16(b + 128 + 32 * h);
    t.qh[1] = ld16(b + 144 + 32 * h);
    t.sc = __ldg(reinterpret_cast<const int2*>(b + 192 + 8 * h));
    t.d = __half2float(reinterpret_cast<const __half*>(base + total_blocks * kQ6KQuantBytes)[block]);
    return t;
  }
  static __device__ int scale(const int2& sc, int j) {
    const int w = j < 4 ? sc.x : sc.y;
    return static_cast<signed char>((w >> (8 * (j & 3))) & 0xFF);
  }
  static __device__ float dot(const Loaded& t, const int8_t* xq, const float2* xds) {
    float r = 0.f;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int4 x0 = ld16(xq + 32 * k), x1 = ld16(xq + 32 * k + 16);
      int s[2] = {0, 0};
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const int l = word(t.ql[(8 * (k & 1) + i) / 4], i % 4);
        const int lo = k >= 2 ? (l >> 4) & 0x0F0F0F0F : l & 0x0F0F0F0F;
        const int hb = ((word(t.qh[i / 4], i % 4) >> (2 * k)) & 0x03030303) << 4;
        const int v = static_cast<int>(__vsubss4(static_cast<unsigned>(lo | hb), 0x20202020u));
        s[i / 4] = __dp4a(v, word(i < 4 ? x0 : x1, i % 4), s[i / 4]);
      }
      r += xds[k].x * static_cast<float>(scale(t.sc, 2 * k) * s[0] + scale(t.sc, 2 * k + 1) * s[1]);
    }
    return t.d * r;
  }
};

}  // namespace umi::cuda
