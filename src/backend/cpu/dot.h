// Dot products of one weight row (in its file dtype) with a float vector, and
// row dequantization: the inner loops of every matrix product.
#pragma once

#include <cstddef>
#include <cstdint>

#include "format/dtype.h"

namespace umi::cpu {

using DotFn = float (*)(const std::byte* row, const float* x, int64_t n);
// The fastest implementation this CPU runs (chosen once, at first use).
DotFn dot_function(DType t);
// The portable implementation, and a scalar reference that tests compare to.
DotFn dot_portable(DType t);
float dot_reference(DType t, const std::byte* row, const float* x, int64_t n);

void dequantize(DType t, const std::byte* row, float* out, int64_t n);

// Quantized weights multiply quantized activations: x is first turned into
// q8 blocks (a float scale d and 32 int8 each, as llama.cpp's q8_1 with float
// fields) and the dot products run on integers, 32 values a few instructions
// at a time. The sums of q over each half serve the formats with a min
// (x = d*q + m: the dot product is d * sum(q*w) + m * d * sum(q)) and the
// kernels that read weights as unsigned bytes (w + offset: subtract offset * sum).
struct Q8Block {
  float d;
  int16_t sum[2];  // q[0..15], q[16..31]
  int8_t q[32];
  float qsum() const { return static_cast<float>(sum[0] + sum[1]); }
};
void quantize_activations(const float* x, int64_t n, Q8Block* out);
using QDotFn = float (*)(const std::byte* row, const Q8Block* x, int64_t n);
// For every quantized weight type matmul supports; nullptr for float types.
QDotFn qdot_function(DType t);
QDotFn qdot_portable(DType t);
// Which instruction set the kernels chosen at run time use ("avx512vnni",
// "avx2", "portable"), for benchmarks and --verbose.
const char* kernel_isa();
// Four activation rows against one weight row (prefill): each weight block is
// unpacked once for all four. out[j] = row . x[j].
using QDot4Fn = void (*)(const std::byte* row, const Q8Block* const x[4], int64_t n, float out[4]);
QDot4Fn qdot4_function(DType t);  // nullptr where there is no such kernel

// acc[i] = acc[i] * scale + w * v[i], v in f32, f16 or q8_0 (the KV cache's types).
void scale_add(float* acc, float scale, float w, const std::byte* v, DType v_type, int64_t n);

// Attention on f32 tiles. A KV row (f32, f16 or q8_0; n a multiple of 32 for
// q8_0) as floats:
void kv_to_f32(const std::byte* row, DType t, int64_t n, float* out);
// x (n floats) as a KV row of type t: the inverse of kv_to_f32 (F16 rounds
// to nearest even; Q8_0 as quantize_row).
void kv_from_f32(const float* x, DType t, int64_t n, std::byte* row);
// scores[i * nk + j] = scale * (q_i . k_j), q_i at q + i * q_stride, k_j at k + j * hd.
void attn_scores(const float* q, int64_t q_stride, int64_t nq, const float* k, int64_t nk, int64_t hd, float scale, float* scores);
// acc_i += sum_j w[i * nk + j] * v_j, acc_i at acc + i * acc_stride, v_j at v + j * hd.
void attn_accumulate(const float* w, int64_t nq, const float* v, int64_t nk, int64_t hd, float* acc, int64_t acc_stride);

// One token's attention over n keys of one KV head, fused: for each of the
// nq query rows q_g (at q + g * hd), scores s_j = scale * (q_g . k_j), j < n,
// then the online softmax: with m' = max(row_max[g], max_j s_j),
//   o_g     = o_g * e^(row_max[g] - m') + sum_j e^(s_j - m') v_j   (o_g at o + g * hd)
//   denom_g = denom_g * e^(row_max[g] - m') + sum_j e^(s_j - m'),  row_max[g] = m'.
// k_j at k + j * stride and v_j at v + j * stride, in type t (f32, f16,
// q8_0); hd at most kAttnKeysMaxHeadDim.
inline constexpr int64_t kAttnKeysMaxHeadDim = 256;
void attn_keys(const float* q, int64_t nq, const std::byte* k, const std::byte* v, size_t stride, DType t, int64_t n, int64_t hd,
               float scale, float* row_max, float* denom, float* o);

// Element-wise, within 2 ulp of the C library's expf:
// gate[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + e^-g).
void swiglu(float* gate, const float* up, int64_t n);
// s[i] = e^(s[i] - shift); returns the sum of the new s (a softmax's numerators).
float exp_sum(float* s, int64_t n, float shift);

}  // namespace umi::cpu
