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

}  // namespace

bool is_split_type(DType t) { return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q6_K; }

DType device_dtype(DType file) {
  switch (file) {
    case DType::Q5_0: return DType::Q8_0;
    case DType::Q4_1:
    case DType::Q5_1: return DType::F16;
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
  else if (t == DType::Q8_0) split_kernel<32, true><<<grid, 256, 0, stream>>>(s, first, count, total, d);
  else if (t == DType::Q4_0) split_kernel<16, true><<<grid, 256, 0, stream>>>(s, first, count, total, d);
  else split_kernel<208, false><<<grid, 256, 0, stream>>>(s, first, count, total, d);
  return cudaGetLastError();
}

}  // namespace umi::cuda
