// One warp per row; four lanes per 32-value block, so a warp covers eight
// consecutive blocks per step: its weight loads sweep the row front to back
// and its activation loads are 1 KB contiguous (16-byte loads), instead of
// 32 lanes each reading a different block's activations (the first version:
// 250 GB/s, bound by uncoalesced activation reads). Blocks sit at 2-byte
// alignment in the file (34 and 18 bytes), so quants are read as 16-bit
// words. Four rows per thread block keep enough loads in flight.
#include "backend/cuda/quant_matvec.h"

#include <cuda_fp16.h>

#include <cstdint>
#include <string>

#include "core/error.h"

namespace umi::cuda {

namespace {

constexpr int kRowsPerBlock = 4;

__device__ inline float half_at(const unsigned char* p) {
  return __half2float(*reinterpret_cast<const __half*>(p));
}

__device__ inline float dot4(float4 x, float a, float b, float c, float d) { return x.x * a + x.y * b + x.z * c + x.w * d; }

// Q8_0: {f16 d; int8 q[32]}. Lane part k (0..3) takes values 8k..8k+7.
__device__ inline float part_dot_q8_0(const unsigned char* b, int k, const float* x) {
  const unsigned short* q = reinterpret_cast<const unsigned short*>(b + 2) + 4 * k;
  const float4* xv = reinterpret_cast<const float4*>(x + 8 * k);
  const float4 x0 = __ldg(xv), x1 = __ldg(xv + 1);
  const unsigned short w0 = q[0], w1 = q[1], w2 = q[2], w3 = q[3];
  auto lo = [](unsigned short w) { return static_cast<float>(static_cast<signed char>(w & 0xFF)); };
  auto hi = [](unsigned short w) { return static_cast<float>(static_cast<signed char>(w >> 8)); };
  return (dot4(x0, lo(w0), hi(w0), lo(w1), hi(w1)) + dot4(x1, lo(w2), hi(w2), lo(w3), hi(w3))) * half_at(b);
}

// Q4_0: {f16 d; u8 q[16]}: value j = (q[j] & 15) - 8, value j + 16 = (q[j] >> 4) - 8.
// Lane part k takes bytes 4k..4k+3: values 4k..4k+3 and 16+4k..16+4k+3.
__device__ inline float part_dot_q4_0(const unsigned char* b, int k, const float* x) {
  const unsigned short* q = reinterpret_cast<const unsigned short*>(b + 2) + 2 * k;
  const float4 xl = __ldg(reinterpret_cast<const float4*>(x + 4 * k));
  const float4 xh = __ldg(reinterpret_cast<const float4*>(x + 16 + 4 * k));
  const unsigned int v = static_cast<unsigned int>(q[0]) | (static_cast<unsigned int>(q[1]) << 16);
  auto n = [v](int i) { return static_cast<float>(static_cast<int>((v >> (4 * i)) & 15) - 8); };
  // byte j holds (low: value 4k+j, high: value 16+4k+j)
  return (dot4(xl, n(0), n(2), n(4), n(6)) + dot4(xh, n(1), n(3), n(5), n(7))) * half_at(b);
}

// 16-bit floats: a "block" is 32 values (64 bytes); part k is one 16-byte
// load of 8 values.
__device__ inline float bf16_lo(unsigned w) { return __uint_as_float(w << 16); }
__device__ inline float bf16_hi(unsigned w) { return __uint_as_float(w & 0xFFFF0000u); }
__device__ inline float part_dot_bf16(const unsigned char* b, int k, const float* x) {
  const uint4 w = __ldg(reinterpret_cast<const uint4*>(b) + k);
  const float4* xv = reinterpret_cast<const float4*>(x + 8 * k);
  const float4 x0 = __ldg(xv), x1 = __ldg(xv + 1);
  return dot4(x0, bf16_lo(w.x), bf16_hi(w.x), bf16_lo(w.y), bf16_hi(w.y)) +
         dot4(x1, bf16_lo(w.z), bf16_hi(w.z), bf16_lo(w.w), bf16_hi(w.w));
}
__device__ inline float2 half2f(unsigned w) { return __half22float2(*reinterpret_cast<const __half2*>(&w)); }
__device__ inline float part_dot_f16(const unsigned char* b, int k, const float* x) {
  const uint4 w = __ldg(reinterpret_cast<const uint4*>(b) + k);
  const float4* xv = reinterpret_cast<const float4*>(x + 8 * k);
  const float4 x0 = __ldg(xv), x1 = __ldg(xv + 1);
  const float2 a = half2f(w.x), c = half2f(w.y), d = half2f(w.z), e = half2f(w.w);
  return dot4(x0, a.x, a.y, c.x, c.y) + dot4(x1, d.x, d.y, e.x, e.y);
}
// f32: part k is 8 values, two 16-byte loads.
__device__ inline float part_dot_f32(const unsigned char* b, int k, const float* x) {
  const float4* w = reinterpret_cast<const float4*>(b) + 2 * k;
  const float4* xv = reinterpret_cast<const float4*>(x + 8 * k);
  const float4 w0 = __ldg(w), w1 = __ldg(w + 1), x0 = __ldg(xv), x1 = __ldg(xv + 1);
  return dot4(x0, w0.x, w0.y, w0.z, w0.w) + dot4(x1, w1.x, w1.y, w1.z, w1.w);
}

template <int BlockBytes, float (*PartDot)(const unsigned char*, int, const float*)>
__global__ void __launch_bounds__(32 * kRowsPerBlock) matvec_kernel(const unsigned char* w, int64_t rows, int64_t blocks,
                                                                     const float* __restrict__ x, float* __restrict__ y) {
  const int lane = threadIdx.x & 31, part = lane & 3;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= rows) return;
  const unsigned char* r = w + row * blocks * BlockBytes;
  // Four steps unrolled with their own sums: four steps' loads are in
  // flight at once (a 4096-column row is only 16 steps; one at a time left
  // small matrices latency-bound at 12-15 us).
  float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
  int64_t b = lane >> 2;
  for (; b + 24 < blocks; b += 32) {
    s0 += PartDot(r + b * BlockBytes, part, x + b * 32);
    s1 += PartDot(r + (b + 8) * BlockBytes, part, x + (b + 8) * 32);
    s2 += PartDot(r + (b + 16) * BlockBytes, part, x + (b + 16) * 32);
    s3 += PartDot(r + (b + 24) * BlockBytes, part, x + (b + 24) * 32);
  }
  for (; b < blocks; b += 8) s0 += PartDot(r + b * BlockBytes, part, x + b * 32);
  float s = (s0 + s1) + (s2 + s3);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
  if (lane == 0) y[row] = s;
}

}  // namespace

bool matvec_supports(DType t) {
  return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::F16 || t == DType::BF16 || t == DType::F32;
}

cudaError_t matvec(const QuantMatrix& w, const float* x, float* y, cudaStream_t stream) {
  if (!matvec_supports(w.dtype)) throw Error("cuda matvec: unsupported weight type " + std::string(to_string(w.dtype)));
  if (!w.data || !x || !y) throw Error("cuda matvec: null pointer");
  if (w.rows <= 0 || w.cols <= 0 || w.cols % 32 != 0)
    throw Error("cuda matvec: " + std::to_string(w.rows) + " x " + std::to_string(w.cols) + " is not a positive size with whole 32-value blocks");
  if (w.rows > (int64_t{1} << 31) * kRowsPerBlock) throw Error("cuda matvec: too many rows");
  const int64_t blocks = w.cols / 32;
  const dim3 grid(static_cast<unsigned>((w.rows + kRowsPerBlock - 1) / kRowsPerBlock)), block(32 * kRowsPerBlock);
  const auto* data = static_cast<const unsigned char*>(w.data);
  if (w.dtype != DType::Q8_0 && w.dtype != DType::Q4_0 && (reinterpret_cast<uintptr_t>(w.data) % 16 != 0))
    throw Error("cuda matvec: float weights must be 16-byte aligned");
  switch (w.dtype) {
    case DType::Q8_0: matvec_kernel<34, part_dot_q8_0><<<grid, block, 0, stream>>>(data, w.rows, blocks, x, y); break;
    case DType::Q4_0: matvec_kernel<18, part_dot_q4_0><<<grid, block, 0, stream>>>(data, w.rows, blocks, x, y); break;
    case DType::BF16: matvec_kernel<64, part_dot_bf16><<<grid, block, 0, stream>>>(data, w.rows, blocks, x, y); break;
    case DType::F16: matvec_kernel<64, part_dot_f16><<<grid, block, 0, stream>>>(data, w.rows, blocks, x, y); break;
    default: matvec_kernel<128, part_dot_f32><<<grid, block, 0, stream>>>(data, w.rows, blocks, x, y); break;
  }
  return cudaGetLastError();
}

}  // namespace umi::cuda
