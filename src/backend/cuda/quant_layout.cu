#include "backend/cuda/quant_layout.h"

#include <string>

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

}  // namespace

bool is_split_type(DType t) { return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q6_K; }

int split_quant_bytes(DType t) { return t == DType::Q8_0 ? 32 : t == DType::Q4_0 ? 16 : t == DType::Q6_K ? 208 : 0; }

cudaError_t split_blocks(DType t, const void* src, int64_t first, int64_t count, int64_t total, void* dst,
                         cudaStream_t stream) {
  if (!is_split_type(t)) throw Error("cuda split_blocks: " + std::string(to_string(t)) + " is not split on upload");
  if (!src || !dst || first < 0 || count <= 0 || first + count > total)
    throw Error("cuda split_blocks: blocks [" + std::to_string(first) + ", " + std::to_string(first + count) + ") of " +
                std::to_string(total));
  const unsigned grid = static_cast<unsigned>((count + 255) / 256);
  const auto* s = static_cast<const unsigned short*>(src);
  auto* d = static_cast<unsigned char*>(dst);
  if (t == DType::Q8_0) split_kernel<32, true><<<grid, 256, 0, stream>>>(s, first, count, total, d);
  else if (t == DType::Q4_0) split_kernel<16, true><<<grid, 256, 0, stream>>>(s, first, count, total, d);
  else split_kernel<208, false><<<grid, 256, 0, stream>>>(s, first, count, total, d);
  return cudaGetLastError();
}

}  // namespace umi::cuda
