// CPU kernels the forward pass uses. Each checks its inputs, has a plain
// scalar reference (kernels_reference.h) that the tests compare against on
// random inputs, and a bandwidth number in bench/.
//
// Weights are read in place from the mapped file in their own dtype:
// nothing is dequantized to a full-size buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "backend/cpu/thread_pool.h"
#include "backend/weight_view.h"
#include "format/dtype.h"

namespace umi::cpu {

using umi::MatrixView;
using umi::VectorView;

// Whether a dtype can be a matrix operand here.
bool matmul_supports(DType t);

// Scratch a matrix product may use, from the caller's accounted memory:
// q8 activations (tokens * cols / 32 blocks of 40 bytes) and, for the tiled
// GEMM, one packed tile per thread (gemm_pack_bytes(cols) each).
struct MatmulScratch {
  void* q8 = nullptr;
  size_t q8_bytes = 0;
  void* pack = nullptr;
  size_t pack_bytes = 0;
};

// y[t, r] = sum_k w[r, k] * x[t, k] for t < tokens: x is [tokens, w.cols],
// y is [tokens, w.rows]. Rows are split across the pool's threads. Callers
// that account memory pass scratch; others (tests, benchmarks) may pass null
// to use temporaries.
void matmul(ThreadPool& pool, const MatrixView& w, const float* x, int64_t tokens, float* y,
            const MatmulScratch* scratch = nullptr);

using Product = MatrixProduct;  // y = w x, one of several of the same input

// ys[i] = ws[i] x for products of one input x [tokens, cols]. One token
// through the pair kernels (decode) is one balanced job over all their rows
// with x prepared once: q, k and v of a layer cost one wait, not three.
// Anything else runs matmul per product.
void matmuls(ThreadPool& pool, std::span<const Product> products, const float* x, int64_t tokens,
             const MatmulScratch* scratch = nullptr);

// The feed-forward's gated product: gate = silu(x Wg^T) * (x Wu^T), both
// [tokens, F]; up is scratch of that size. One token through the pair
// kernels is one job over all the gate's chunks, then all the up's, so each
// thread streams one contiguous run of rows (with two threads: one the
// gate, the other the up); whichever thread finishes the second of a chunk's
// two products applies the gate to those rows: no second pass over F
// values, no serial step.
void gated_matmul(ThreadPool& pool, const MatrixView& wg, const MatrixView& wu, const float* x, int64_t tokens, float* gate,
                  float* up, const MatmulScratch* scratch = nullptr);

// Tokens from which the tiled GEMM is used (below: row-at-a-time kernels).
inline constexpr int64_t kGemmMinTokens = 8;

// One row of a matrix as floats (embedding lookup).
void dequantize_row(const MatrixView& w, int64_t row, float* out);

// out = x / rms(x) * weight, over n elements (out may alias x).
void rms_norm(const float* x, const VectorView& weight, int64_t n, float eps, float* out);

// Rotary embedding of one head vector at `position`. `inv_freq` has dim/2
// entries. Pairs are (i, i + dim/2) (Hugging Face's rotate_half) or
// (2i, 2i+1) (GGUF llama, whose q/k weights were permuted for it).
void rope(float* head, int64_t dim, const float* inv_freq, int64_t position, bool interleaved);
// The same in two parts, so that one position's angles serve every head and
// layer: cos_sin = [cos of each of dim/2 angles, then their sin].
void rope_angles(int64_t dim, const float* inv_freq, int64_t position, float* cos_sin);
void rope_apply(float* head, int64_t dim, const float* cos_sin, bool interleaved);

// swiglu(gate, up, n) (dot.h) split across the pool's threads (prefill's [tokens, F]).
void swiglu(ThreadPool& pool, float* gate, const float* up, int64_t n);

}  // namespace umi::cpu
