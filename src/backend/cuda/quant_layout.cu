#include "backend/cuda/quant_layout.h"

#include <string>

#include <cuda_fp16.h>

#include "core/error.h"

namespace umi::cuda {

namespace {

// One thread per block: its quants as 16-bit words (the file's blocks are
// 2-byte aligned), its scale as one (the block's first word, or for Q6_K
// its last).
template <int QuantBytes, bool ScaleFirst>
__global__ void split_kernel(const unsigned short* src, int64_t first, int64_t count, int64_t total, unsigned char* dst) {
  constexpr int kWords = 1 + QuantBytes / 2, kQuantsAt = ScaleFirst ? 1 : 0, kScaleAt = ScaleFirst ? 0 : QuantBytes / 2;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const unsigned short* b = src + i * kWords;
  unsigned short* q = reinterpret_cast<unsigned short*>(dst + (first + i) * QuantBytes);
#pragma unroll 8
  for (int j = 0; j < QuantBytes / 2; ++j) q[j] = b[kQuantsAt + j];
  reinterpret_cast<unsigned short*>(dst + total * QuantBytes)[first + i] = b[kScaleAt];
}

// One thread per block of a 32-value 4/5-bit format (cpu/quant_blocks.h:
// f16 d, Q4_1/Q5_1's f16 m, Q5's 32 fifth bits at High, 16 bytes of
// nibbles at Nibbles, values j and 16 + j in byte j's low and high nibble),
// read a byte at a time: this runs once per upload. Q5_0 is written as a
// split Q8_0 block (q - 16 and d), Q4_1/Q5_1 as 32 f16 values.
template <int Bytes, int High, int Nibbles, bool Min>
__global__ void nibble_rewrite_kernel(const unsigned char* src, int64_t first, int64_t count, int64_t total, unsigned char* dst) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const unsigned char* b = src + i * Bytes;
  uint32_t qh = 0;
  if constexpr (High >= 0) qh = b[High] | b[High + 1] << 8 | b[High + 2] << 16 | static_cast<uint32_t>(b[High + 3]) << 24;
  const auto value = [&](int j) {  // 0..31
    const int nibble = j < 16 ? b[Nibbles + j] & 15 : b[Nibbles + j - 16] >> 4;
    return nibble | static_cast<int>((qh >> j) & 1) << 4;
  };
  if constexpr (!Min) {
    signed char* q = reinterpret_cast<signed char*>(dst + (first + i) * 32);
    for (int j = 0; j < 32; ++j) q[j] = static_cast<signed char>(value(j) - 16);
    reinterpret_cast<unsigned short*>(dst + total * 32)[first + i] = static_cast<unsigned short>(b[0] | b[1] << 8);
  } else {
    const float d = __half2float(__ushort_as_half(static_cast<unsigned short>(b[0] | b[1] << 8)));
    const float m = __half2float(__ushort_as_half(static_cast<unsigned short>(b[2] | b[3] << 8)));
    __half* out = reinterpret_cast<__half*>(dst) + (first + i) * 32;
    for (int j = 0; j < 32; ++j) out[j] = __float2half_rn(d * static_cast<float>(value(j)) + m);
  }
}

// IQ4's levels (cpu/quant_blocks.h kIq4nlValues).
__constant__ signed char kIq4Levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

__device__ unsigned short u16_at(const unsigned char* p) { return static_cast<unsigned short>(p[0] | p[1] << 8); }

// One thread per file block. IQ4_NL becomes a split Q8_0 block, exactly
// (its levels as int8, the same d); IQ4_XS eight of them, one per 32 values,
// each scale d x (ls - 32) rounded to f16 once.
template <bool Xs>
__global__ void iq4_rewrite_kernel(const unsigned char* src, int64_t first, int64_t count, int64_t total, unsigned char* dst) {
  constexpr int kBytes = Xs ? 136 : 18, kSubs = Xs ? 8 : 1;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const unsigned char* b = src + i * kBytes;
  const unsigned short d = u16_at(b);
  for (int s = 0; s < kSubs; ++s) {
    const unsigned char* qs = Xs ? b + 8 + 16 * s : b + 2;
    const int64_t o = (first + i) * kSubs + s;
    signed char* q = reinterpret_cast<signed char*>(dst + o * 32);
    for (int j = 0; j < 16; ++j) q[j] = kIq4Levels[qs[j] & 15], q[j + 16] = kIq4Levels[qs[j] >> 4];
    unsigned short scale = d;
    if constexpr (Xs) {
      const int ls = ((b[4 + s / 2] >> (4 * (s % 2))) & 15) | ((u16_at(b + 2) >> (2 * s)) & 3) << 4;
      scale = __half_as_ushort(__float2half_rn(__half2float(__ushort_as_half(d)) * static_cast<float>(ls - 32)));
    }
    reinterpret_cast<unsigned short*>(dst + total * kSubs * 32)[o] = scale;
  }
}

// Value v (0..255) of a Q2_K/Q3_K block's two-bit quants at qs.
__device__ int two_bits(const unsigned char* qs, int v) { return (qs[32 * (v / 128) + v % 32] >> (2 * (v % 128 / 32))) & 3; }

// Q3_K's q (-4..3) of value v.
__device__ int q3_value(const unsigned char* b, int v) { return two_bits(b + 32, v) - ((b[v % 32] >> (v / 32)) & 1 ? 0 : 4); }

// One thread per block: Q3_K becomes a split Q6_K block, exactly: q + 32 as
// Q6_K's 6-bit q (its ql nibbles and qh bit pairs, cpu q6k_value), the
// sixteen 6-bit scales minus 32 as its int8 scales, the same d.
__global__ void q3k_to_q6k_kernel(const unsigned char* src, int64_t first, int64_t count, int64_t total, unsigned char* dst) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const unsigned char* b = src + i * 110;
  unsigned char* out = dst + (first + i) * 208;
  for (int k = 0; k < 128; ++k) {  // ql[k]: half k / 64, group (k % 64) / 32 in the low nibble, that + 2 in the high one
    const int v = 128 * (k / 64) + 32 * (k % 64 / 32) + k % 32;
    out[k] = static_cast<unsigned char>((q3_value(b, v) + 32) & 15 | ((q3_value(b, v + 64) + 32) & 15) << 4);
  }
  for (int k = 0; k < 64; ++k) {  // qh[k]: bits 2g, 2g + 1 for value 128 (k / 32) + 32 g + k % 32
    int bits = 0;
    for (int g = 0; g < 4; ++g) bits |= ((q3_value(b, 128 * (k / 32) + 32 * g + k % 32) + 32) >> 4) << (2 * g);
    out[128 + k] = static_cast<unsigned char>(bits);
  }
  const unsigned char* sc = b + 96;
  for (int g = 0; g < 16; ++g) {
    const int low = g < 8 ? sc[g] & 15 : sc[g - 8] >> 4;
    out[192 + g] = static_cast<unsigned char>(static_cast<signed char>((low | ((sc[8 + g % 4] >> (2 * (g / 4))) & 3) << 4) - 32));
  }
  reinterpret_cast<unsigned short*>(dst + total * 208)[first + i] = u16_at(b + 108);
}

// One thread per block: Q2_K's 256 values as f16, each rounded once.
__global__ void q2k_to_f16_kernel(const unsigned char* src, int64_t first, int64_t count, unsigned char* dst) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= count) return;
  const unsigned char* b = src + i * 84;
  const float d = __half2float(__ushort_as_half(u16_at(b + 80))), dmin = __half2float(__ushort_as_half(u16_at(b + 82)));
  __half* out = reinterpret_cast<__half*>(dst) + (first + i) * 256;
  for (int v = 0; v < 256; ++v)
    out[v] = __float2half_rn(d * static_cast<float>((b[v / 16] & 15) * two_bits(b + 16, v)) - dmin * static_cast<float>(b[v / 16] >> 4));
}

}  // namespace

bool is_split_type(DType t) { return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q6_K; }

DType device_dtype(DType file) {
  switch (file) {
    case DType::Q5_0:
    case DType::IQ4_NL:
    case DType::IQ4_XS: return DType::Q8_0;
    case DType::Q3_K: return DType::Q6_K;
    case DType::Q4_1:
    case DType::Q5_1:
    case DType::Q2_K: return DType::F16;
    default: return file;
  }
}

bool is_rewritten_on_upload(DType t) { return is_split_type(t) || device_dtype(t) != t; }

size_t device_matrix_bytes(DType t, int64_t blocks) {
  const uint64_t values = static_cast<uint64_t>(blocks) * dtype_info(t).block_elems;
  return static_cast<size_t>(dtype_bytes(device_dtype(t), values).value());
}

int split_quant_bytes(DType t) { return t == DType::Q8_0 ? 32 : t == DType::Q4_0 ? 16 : t == DType::Q6_K ? 208 : 0; }

cudaError_t split_blocks(DType t, const void* src, int64_t first, int64_t count, int64_t total, void* dst,
                         cudaStream_t stream) {
  if (!is_rewritten_on_upload(t)) throw Error("cuda split_blocks: " + std::string(to_string(t)) + " is not rewritten on upload");
  if (!src || !dst || first < 0 || count <= 0 || first + count > total)
    throw Error("cuda split_blocks: blocks [" + std::to_string(first) + ", " + std::to_string(first + count) + ") of " +
                std::to_string(total));
  const unsigned grid = static_cast<unsigned>((count + 255) / 256);
  const auto* s = static_cast<const unsigned short*>(src);
  const auto* bytes = static_cast<const unsigned char*>(src);
  auto* d = static_cast<unsigned char*>(dst);
  if (t == DType::Q5_0) nibble_rewrite_kernel<22, 2, 6, false><<<grid, 256, 0, stream>>>(bytes, first, count, total, d);
  else if (t == DType::Q4_1) nibble_rewrite_kernel<20, -1, 4, true><<<grid, 256, 0, stream>>>(bytes, first, count, total, d);
  else if (t == DType::Q5_1) nibble_rewrite_kernel<24, 4, 8, true><<<grid, 256, 0, stream>>>(bytes, first, count, total, d);
  else if (t == DType::IQ4_NL) iq4_rewrite_kernel<false><<<grid, 256, 0, stream>>>(bytes, first, count, total, d);
  else if (t == DType::IQ4_XS) iq4_rewrite_kernel<true><<<grid, 256, 0, stream>>>(bytes, first, count, total, d);
  else if (t == DType::Q3_K) q3k_to_q6k_kernel<<<grid, 256, 0, stream>>>(bytes, first, count, total, d);
  else if (t == DType::Q2_K) q2k_to_f16_kernel<<<grid, 256, 0, stream>>>(bytes, first, count, d);
  else if (t == DType::Q8_0) split_kernel<32, true><<<grid, 256, 0, stream>>>(s, first, count, total, d);
  else if (t == DType::Q4_0) split_kernel<16, true><<<grid, 256, 0, stream>>>(s, first, count, total, d);
  else split_kernel<208, false><<<grid, 256, 0, stream>>>(s, first, count, total, d);
  return cudaGetLastError();
}

}  // namespace umi::cuda
