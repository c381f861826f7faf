// The CUDA backend's matrix products for few tokens (decode, small batches):
// y[t][r] = row r of W . x[t].
//
// Q8_0 and Q4_0 (split layout, quant_layout.h) multiply q8-quantized
// activations (q8_rows.h) as integers: with dp4a (4 multiply-adds of int8
// per instruction, a block's 32 weights in one or two 128-bit loads) for
// the fewest tokens, on the int8 tensor cores (mma.sync, quant_mma.cuh)
// from kMmaTokens on. Q4_K, Q5_K and Q6_K (kquant.cuh; columns a multiple
// of 256) the same way, a 32-value sub-block at a time. F16, BF16 and F32 weights (16-byte aligned) multiply
// f32 activations, one token.
//
// Launchers check their inputs (throwing umi::Error that names the problem),
// enqueue on `stream` and return the launch's error code; they do not
// synchronize. Device pointers; outputs must not overlap inputs.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "backend/cuda/q8_rows.h"
#include "format/dtype.h"

namespace umi::cuda {

struct QuantMatrix {
  DType dtype = DType::Q8_0;
  const void* data = nullptr;  // device memory: the whole matrix
  int64_t rows = 0, cols = 0;  // cols: a multiple of 32
};

// x (n floats) into q8 blocks: out.n == n, a multiple of 32.
cudaError_t quantize_q8(const float* x, const Q8Rows& out, cudaStream_t stream);

// Q8_0, Q4_0, Q4_K, Q5_K, Q6_K: y [tokens, w.rows] = x W^T for x quantized,
// x.n == tokens * w.cols. `accumulate`: y += instead of y =.
bool matvec_q8_supports(DType t);
cudaError_t matvec_q8(const QuantMatrix& w, const Q8Rows& x, int64_t tokens, float* y, bool accumulate,
                      cudaStream_t stream);

// Several matrices of one type and width on the same x in one launch (the
// q, k and v projections): each target's y [tokens, rows] as above (with
// `accumulate`, y += and, when `also` is set, also = the product); or, with
// `swiglu`, two targets (gate, up) of equal rows: y1 = x Wu^T and
// y0 = silu(x Wg^T) * y1.
constexpr int kMaxMatvecTargets = 3;
struct MatvecTarget {
  const void* data = nullptr;
  int64_t rows = 0;
  float* y = nullptr;
  float* also = nullptr;
};
struct MatvecTargets {
  MatvecTarget m[kMaxMatvecTargets];
  int count = 0;
};
enum class MatvecOutput { store, accumulate, swiglu };
// The RMSNorm that follows an accumulate product (x += W in; then
// rmsnorm(x) * w for the next products), done by the product's own thread
// blocks instead of a one-block kernel after it: each block takes 32 rows
// of x, quantizes x * w there into q8 and stores their sum of x^2; the
// products that read q8 apply the 1 / rms factor (Q8Rows::rms_sums). One
// token; the product's rows a multiple of 32.
struct NextNorm {
  const void* w = nullptr;  // the norm's weights, f32, f16 or bf16
  DType dtype = DType::F32;
  Q8Rows q8;              // where: q8.n == rows
  float* sums = nullptr;  // rows / 32 floats: the products that read q8 take them as q8.rms_sums
};
// Q8_0 and Q4_0 (a 1024-thread block's 64 registers spill the K-quant kernels).
bool next_norm_supports(DType t);
// Which kernel runs: by the token count (automatic: the tensor cores from
// kMmaTokens when x.tiles is given), or the one named (benchmarks and tests
// compare them; the tensor cores need x.tiles).
enum class MatvecKernel { automatic, dp4a, mma };
constexpr int64_t kMmaTokens = 4;  // measured: from 4 tokens the tensor cores are faster (PERFORMANCE.md)
// next_norm (optional): with out == accumulate, one target, one token, dp4a.
cudaError_t matvec_q8(DType dtype, int64_t cols, const MatvecTargets& targets, const Q8Rows& x, int64_t tokens,
                      MatvecOutput out, cudaStream_t stream, MatvecKernel kernel = MatvecKernel::automatic,
                      const NextNorm* next_norm = nullptr);

// F16, BF16, F32: y [w.rows] = W x, one token of f32 activations; or
// several matrices on that x with matvec_q8's outputs.
bool matvec_supports(DType t);
cudaError_t matvec(const QuantMatrix& w, const float* x, float* y, cudaStream_t stream);
cudaError_t matvec(DType dtype, int64_t cols, const MatvecTargets& targets, const float* x, MatvecOutput out, cudaStream_t stream);

}  // namespace umi::cuda
