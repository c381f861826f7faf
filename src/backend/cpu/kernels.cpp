#include "backend/cpu/kernels.h"

#include <array>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/cpu/dot.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/half.h"
#include "backend/cpu/q8_pairs.h"
#include "core/error.h"

namespace umi::cpu {

bool matmul_supports(DType t) { return dot_portable(t) != nullptr || qdot_portable(t) != nullptr; }

namespace {

// Rows a chunk of a balanced job takes: 16 (the row kernels' grain, and the
// GEMM's tiles).
constexpr int64_t kChunkRows = 16;

// A single-token chunk's rows: ~32 KB of weights (a Q4_0 2048-column matrix:
// 32 rows), 4-64 rows. Long enough that a chunk's fixed cost (claiming it,
// the call) stays near 1% of its ~1.2 us of streaming and the page-ahead
// prefetch runs on; short enough that the last chunks even out the
// threads. 16-row chunks cost ~5% of a decode step in that overhead.
int64_t pair_chunk_rows(size_t row_bytes) {
  int64_t rows = 4;
  while (rows < 64 && static_cast<size_t>(rows * 2) * row_bytes <= 32768) rows *= 2;
  return rows;
}

// Whether one token's product with w can go through the build's pair
// kernel (q8_pairs.h): whole steps of the kernel (the 4-bit formats four
// blocks, Q8_0 two; the K-quants' rows are whole super-blocks).
bool pairs_apply(const MatrixView& w) {
  const int64_t step = is_nibble_group(w.dtype) ? 128 : is_k_quant(w.dtype) ? 256 : 64;
  return qpair_function(w.dtype) != nullptr && w.cols % step == 0;
}

// Whether products of weights a and b can share one token's laid-out
// activations: the same type, or K-quants that order their sub-blocks alike
// (Q4_K and Q5_K; Q6_K apart, q8_pairs.h).
bool same_pair_layout(DType a, DType b) {
  return a == b || (is_k_quant(a) && is_k_quant(b) && k_order(a) == k_order(b));
}

// One token's activations laid out for the pair kernel of `weights` (Q4_0,
// Q8_0: q8 blocks, then pairs after them; K-quants: Q8KBlocks) in the scratch,
// or in `temporary`; nullptr when a scratch sized for one token has no room
// (callers use the row kernels).
const void* prepare_pairs(DType weights, const float* x, int64_t cols, const MatmulScratch* scratch, std::vector<std::byte>& temporary) {
  const bool k_quant = is_k_quant(weights);
  const size_t q8_bytes = k_quant ? 0 : static_cast<size_t>(cols / 32) * sizeof(Q8Block), need = q8_bytes + 64 + pair_activation_bytes(weights, cols);
  std::byte* base = nullptr;
  if (scratch) {
    if (!scratch->q8 || scratch->q8_bytes < need) return nullptr;
    base = static_cast<std::byte*>(scratch->q8);
  } else {
    temporary.resize(need);
    base = temporary.data();
  }
  const uintptr_t at = reinterpret_cast<uintptr_t>(base) + q8_bytes;
  void* laid_out = base + (q8_bytes + (64 - at % 64) % 64);
  if (k_quant) {
    make_q8k_blocks(weights, x, cols, static_cast<Q8KBlock*>(laid_out));
    return laid_out;
  }
  Q8Block* xq = reinterpret_cast<Q8Block*>(base);
  quantize_activations(x, cols, xq);
  make_q8_pairs(weights, xq, cols / 32, laid_out);
  return laid_out;
}

// One product of a single-token job, worked out before the job: its kernel,
// row size and chunks.
struct PairProduct {
  QPairDotFn dot = nullptr;
  const std::byte* data = nullptr;
  size_t row_bytes = 0;
  int64_t rows = 0, pairs = 0, chunk_rows = 0, chunks = 0;
  float* y = nullptr;
  PairProduct() = default;
  PairProduct(const MatrixView& w, float* out)
      : dot(qpair_function(w.dtype)), data(w.data), row_bytes(w.row_bytes()), rows(w.rows), pairs(w.cols / 64),
        chunk_rows(pair_chunk_rows(row_bytes)), chunks((rows + chunk_rows - 1) / chunk_rows), y(out) {}
  // Chunk c's rows; returns the first.
  int64_t run(int64_t c, const void* xp) const {
    const int64_t r0 = c * chunk_rows, r1 = std::min(rows, r0 + chunk_rows);
    dot(data + static_cast<size_t>(r0) * row_bytes, row_bytes, r1 - r0, xp, pairs, y + r0);
    return r0;
  }
};

void check_product(const MatrixView& w, const float* x, int64_t tokens, const float* y) {
  if (!matmul_supports(w.dtype)) throw Error("matmul: dtype " + std::string(to_string(w.dtype)) + " is not supported");
  if (w.cols % dtype_info(w.dtype).block_elems != 0 || w.cols % 32 != 0 || tokens < 1 || !w.data || !x || !y)
    throw Error("matmul: bad shape or null operand");
}

// One product through the row kernels, or the tiled GEMM from
// kGemmMinTokens tokens.
void matmul_rows(ThreadPool& pool, const MatrixView& w, const float* x, int64_t tokens, float* y, const MatmulScratch* scratch) {
  const size_t rb = w.row_bytes();
  const int64_t k = w.cols, n = w.rows;
  const QDotFn qdot = qdot_function(w.dtype);
  if (!qdot) {
    const DotFn dot = dot_function(w.dtype);
    pool.parallel_chunks(n, kChunkRows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const std::byte* row = w.data + static_cast<size_t>(r) * rb;
        for (int64_t t = 0; t < tokens; ++t) y[t * n + r] = dot(row, x + t * k, k);
      }
    });
    return;
  }
  // x as q8 blocks, once for all rows: 40 bytes per 32 activations.
  const size_t blocks = static_cast<size_t>(tokens * k / 32);
  std::vector<Q8Block> q8_temporary;
  Q8Block* xq = scratch ? static_cast<Q8Block*>(scratch->q8) : nullptr;
  if (!xq || scratch->q8_bytes < blocks * sizeof(Q8Block)) {
    if (xq) throw Error("matmul: q8 scratch too small");
    q8_temporary.resize(blocks);
    xq = q8_temporary.data();
  }
  for (int64_t t = 0; t < tokens; ++t) quantize_activations(x + t * k, k, xq + t * (k / 32));

  const QGemmFn gemm = tokens >= kGemmMinTokens ? qgemm_function(w.dtype) : nullptr;
  const size_t pack_each = (gemm_pack_bytes(k) + 63) / 64 * 64;
  std::vector<std::byte> pack_temporary;
  std::byte* pack = nullptr;
  if (gemm) {
    const size_t need = pack_each * static_cast<size_t>(pool.size()) + 64;
    pack = scratch ? static_cast<std::byte*>(scratch->pack) : nullptr;
    if (pack && scratch->pack_bytes < need) throw Error("matmul: pack scratch too small");
    if (!pack) pack_temporary.resize(need), pack = pack_temporary.data();
    pack += (64 - reinterpret_cast<uintptr_t>(pack) % 64) % 64;
  }
  const QDot4Fn qdot4 = qdot4_function(w.dtype);
  std::atomic<int> next_slot{0};
  pool.parallel_for(n, 16, [&](int64_t r0, int64_t r1) {
    int64_t r = r0;
    if (gemm)  // whole tiles through the GEMM, the rest below
      r += gemm(GemmArgs{w.data, rb, k, r0, r1, xq, tokens, y, n, pack + pack_each * static_cast<size_t>(next_slot++)});
    for (; r < r1; ++r) {
      const std::byte* row = w.data + static_cast<size_t>(r) * rb;
      int64_t t = 0;
      if (qdot4)
        for (; t + 4 <= tokens; t += 4) {
          const Q8Block* xs[4];
          float out[4];
          for (int j = 0; j < 4; ++j) xs[j] = xq + (t + j) * (k / 32);
          qdot4(row, xs, k, out);
          for (int j = 0; j < 4; ++j) y[(t + j) * n + r] = out[j];
        }
      for (; t < tokens; ++t) y[t * n + r] = qdot(row, xq + t * (k / 32), k);
    }
  });
}

}  // namespace

void matmul(ThreadPool& pool, const MatrixView& w, const float* x, int64_t tokens, float* y, const MatmulScratch* scratch) {
  const Product one[] = {{w, y}};
  matmuls(pool, one, x, tokens, scratch);
}

void matmuls(ThreadPool& pool, std::span<const Product> products, const float* x, int64_t tokens, const MatmulScratch* scratch) {
  bool pairs = tokens == 1 && !products.empty();
  for (const Product& p : products) {
    check_product(p.w, x, tokens, p.y);
    pairs = pairs && pairs_apply(p.w) && same_pair_layout(p.w.dtype, products[0].w.dtype) && p.w.cols == products[0].w.cols;
  }
  std::vector<std::byte> temporary;
  const void* xp = pairs ? prepare_pairs(products[0].w.dtype, x, products[0].w.cols, scratch, temporary) : nullptr;
  if (!xp && products.size() > 1) {
    // Not one pair job. Types whose activations differ in layout (a Q4_K_M
    // file's q and k are Q4_K, its v Q6_K): one job a layout; several
    // tokens, or products the pair kernels do not take: each on its own.
    std::vector<Product> same, rest;
    for (const Product& p : products) (same_pair_layout(p.w.dtype, products[0].w.dtype) ? same : rest).push_back(p);
    if (tokens == 1 && !rest.empty()) {
      matmuls(pool, same, x, tokens, scratch);
      matmuls(pool, rest, x, tokens, scratch);
      return;
    }
    for (const Product& p : products) matmuls(pool, std::span(&p, 1), x, tokens, scratch);
    return;
  }
  if (!xp) {
    matmul_rows(pool, products[0].w, x, tokens, products[0].y, scratch);
    return;
  }
  // Chunks of every product in a row: product i owns [first[i], first[i + 1]).
  constexpr size_t kMost = 8;
  if (products.size() > kMost) throw Error("matmuls: more than 8 products of one input");
  std::array<PairProduct, kMost> each;
  std::array<int64_t, kMost + 1> first{};
  for (size_t i = 0; i < products.size(); ++i) {
    each[i] = PairProduct(products[i].w, products[i].y);
    first[i + 1] = first[i] + each[i].chunks;
  }
  pool.parallel_chunks(first[products.size()], 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      size_t i = 0;
      while (c >= first[i + 1]) ++i;
      each[i].run(c - first[i], xp);
    }
  });
}

void gated_matmul(ThreadPool& pool, const MatrixView& wg, const MatrixView& wu, const float* x, int64_t tokens, float* gate,
                  float* up, const MatmulScratch* scratch) {
  check_product(wg, x, tokens, gate);
  check_product(wu, x, tokens, up);
  if (wg.rows != wu.rows || wg.cols != wu.cols) throw Error("gated_matmul: gate and up matrices differ in shape");
  std::vector<std::byte> temporary;
  const bool pairs = tokens == 1 && pairs_apply(wg) && wu.dtype == wg.dtype;
  const void* xp = pairs ? prepare_pairs(wg.dtype, x, wg.cols, scratch, temporary) : nullptr;
  if (!xp) {
    const Product both[] = {{wg, gate}, {wu, up}};
    matmuls(pool, both, x, tokens, scratch);
    swiglu(pool, gate, up, tokens * wg.rows);
    return;
  }
  // Chunks 0..C-1 are the gate's, C..2C-1 the up's. Taking the same rows of
  // both in turn (one job, the gate applied per chunk) switched each thread
  // between two streams every 32 KB: 47 GB/s where the two products as one
  // run of chunks each streamed at 54 (1B Q4_0 layers, two threads).
  const PairProduct g(wg, gate), u(wu, up);
  const int64_t C = g.chunks;
  std::unique_ptr<std::atomic<uint8_t>[]> halves(new std::atomic<uint8_t>[static_cast<size_t>(C)]());
  pool.parallel_chunks(2 * C, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t i = c0; i < c1; ++i) {
      const int64_t c = i < C ? i : i - C;
      const int64_t r0 = i < C ? g.run(c, xp) : u.run(c, xp), r1 = std::min(g.rows, r0 + g.chunk_rows);
      // acq_rel: the thread that finishes second sees the other's rows.
      if (halves[static_cast<size_t>(c)].fetch_add(1, std::memory_order_acq_rel) == 1) swiglu(gate + r0, up + r0, r1 - r0);
    }
  });
}

void dequantize_row(const MatrixView& w, int64_t row, float* out) {
  if (row < 0 || row >= w.rows) throw Error("dequantize_row: row out of range");
  dequantize(w.dtype, w.data + static_cast<size_t>(row) * w.row_bytes(), out, w.cols);
}

void rms_norm(const float* x, const VectorView& weight, int64_t n, float eps, float* out) {
  if (weight.size < n || dtype_info(weight.dtype).block_elems != 1) throw Error("rms_norm: weight is not a float vector of n values");
  // Eight running sums (the compiler keeps them in vector lanes; one sum
  // serialised ~2,000 dependent adds), and the weights taken 64 at a time
  // through dequantize: VectorView::at's call per element made a 2048-wide
  // norm ~10 us, decode runs 33 a token on one thread.
  double lanes[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) lanes[j] += static_cast<double>(x[i + j]) * x[i + j];
  double ss = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
  for (; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  const size_t elem = dtype_info(weight.dtype).block_bytes;  // F32, F16, BF16: one element a block
  float w[64];
  for (int64_t b = 0; b < n; b += 64) {
    const int64_t m = std::min<int64_t>(64, n - b);
    if (weight.dtype == DType::F32)
      std::memcpy(w, weight.data + static_cast<size_t>(b) * elem, static_cast<size_t>(m) * sizeof(float));
    else
      dequantize(weight.dtype, weight.data + static_cast<size_t>(b) * elem, w, m);
    for (int64_t j = 0; j < m; ++j) out[b + j] = x[b + j] * scale * w[j];
  }
}

void rope_angles(int64_t dim, const float* inv_freq, int64_t position, float* cos_sin) {
  const int64_t half = dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const double angle = static_cast<double>(position) * inv_freq[i];
    cos_sin[i] = static_cast<float>(std::cos(angle));
    cos_sin[half + i] = static_cast<float>(std::sin(angle));
  }
}

void rope_apply(float* head, int64_t dim, const float* cos_sin, bool interleaved) {
  const int64_t half = dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float c = cos_sin[i], s = cos_sin[half + i];
    const int64_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
    const float x0 = head[a], x1 = head[b];
    head[a] = x0 * c - x1 * s;
    head[b] = x1 * c + x0 * s;
  }
}

void rope(float* head, int64_t dim, const float* inv_freq, int64_t position, bool interleaved) {
  std::vector<float> cos_sin(static_cast<size_t>(dim / 2 * 2));
  rope_angles(dim, inv_freq, position, cos_sin.data());
  rope_apply(head, dim, cos_sin.data(), interleaved);
}

void swiglu(ThreadPool& pool, float* gate, const float* up, int64_t n) {
  pool.parallel_for(n, 4096, [&](int64_t b, int64_t e) { swiglu(gate + b, up + b, e - b); });
}

}  // namespace umi::cpu
