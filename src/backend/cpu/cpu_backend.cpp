#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/dot.h"
#include "core/error.h"
#include "core/units.h"
#include "model/memory_plan.h"

namespace umi::cpu {

CpuBackend::CpuBackend(Pool& pool, const BackendSetup& setup)
    : pool_(pool), setup_(setup), threads_(setup.threads), kv_pool_(pool, setup.kv) {
  rope_cos_sin_.resize(setup_.inv_freq.size() * 2);
}

void CpuBackend::bind_weights(ModelWeights&, uint64_t mapped_bytes) {
  // Mapped weights occupy memory once touched: they count against the limit.
  weights_ = pool_.try_reserve(mapped_bytes, MemoryUse::weights);
  if (!weights_)
    throw OutOfMemory("model weights (" + format_bytes(mapped_bytes) + ") do not fit the memory limit of " +
                      format_bytes(pool_.limit()));
  const ActivationLayout a =
      activation_layout(setup_.config, setup_.max_tokens, threads_.size(), setup_.kv.block_tokens);
  quantized_ = pool_.allocate(a.quantized, MemoryUse::activations, "activations (q8)");
  if (a.gemm_pack) gemm_pack_ = pool_.allocate(a.gemm_pack, MemoryUse::activations, "gemm tiles");
  attn_scratch_ = pool_.allocate(a.attn_scratch, MemoryUse::activations, "attention scratch");
}

Buffer CpuBackend::scratch(int64_t count, const char* what) {
  return pool_.allocate(static_cast<size_t>(count) * sizeof(float), MemoryUse::activations, what);
}

void CpuBackend::embed(const MatrixView& table, float* x) {
  for (size_t t = 0; t < pass_.ids.size(); ++t) dequantize_row(table, pass_.ids[t], x + static_cast<int64_t>(t) * table.cols);
}

void CpuBackend::rms_norm(const float* x, const VectorView& w, int64_t rows, float* out) {
  const float eps = static_cast<float>(setup_.config.rms_eps);
  for (int64_t r = 0; r < rows; ++r) cpu::rms_norm(x + r * w.size, w, w.size, eps, out + r * w.size);
}

MatmulScratch CpuBackend::matmul_scratch() const {
  return {quantized_.data(), quantized_.size(), gemm_pack_.data(), gemm_pack_.size()};
}

void CpuBackend::matmul(const MatrixView& w, const float* x, int64_t rows, float* y) {
  const MatmulScratch scratch = matmul_scratch();
  cpu::matmul(threads_, w, x, rows, y, &scratch);
}

void CpuBackend::matmuls(const float* x, int64_t rows, std::span<const Product> products) {
  const MatmulScratch scratch = matmul_scratch();
  cpu::matmuls(threads_, products, x, rows, &scratch);
}

void CpuBackend::gated_matmul(const MatrixView& wg, const MatrixView& wu, const float* x, int64_t rows, float* gate, float* up) {
  const MatmulScratch scratch = matmul_scratch();
  cpu::gated_matmul(threads_, wg, wu, x, rows, gate, up, &scratch);
}

void CpuBackend::add_bias(float* x, const VectorView& b, int64_t rows) {
  if (!b) return;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < b.size; ++i) x[r * b.size + i] += b.at(i);
}

void CpuBackend::rope_store_kv(int64_t layer, float* q, float* k, const float* v, const VectorView& q_norm,
                               const VectorView& k_norm) {
  const ModelConfig& c = setup_.config;
  const int64_t H = c.n_heads, Hkv = c.n_kv_heads, hd = c.head_dim;
  const float eps = static_cast<float>(c.rms_eps);
  const KvLayout& layout = kv_pool_.layout();
  const size_t row = layout.row_bytes();
  const size_t k_offset = static_cast<size_t>(layer) * layout.layer_bytes();
  const size_t v_offset = k_offset + static_cast<size_t>(layout.block_tokens) * row;
  for (const TokenRun& run : pass_.runs)
    for (int64_t t = run.first; t < run.end; ++t) {
      const int64_t pos = pass_.positions[static_cast<size_t>(t)];
      // One position's rotation angles serve all its heads.
      rope_angles(hd, setup_.inv_freq.data(), pos, rope_cos_sin_.data());
      for (int64_t h = 0; h < H; ++h) {
        float* qh = q + (t * H + h) * hd;  // [hd]
        if (q_norm) cpu::rms_norm(qh, q_norm, hd, eps, qh);
        rope_apply(qh, hd, rope_cos_sin_.data(), setup_.rope_interleaved);
      }
      for (int64_t h = 0; h < Hkv; ++h) {
        float* kh = k + (t * Hkv + h) * hd;
        if (k_norm) cpu::rms_norm(kh, k_norm, hd, eps, kh);
        rope_apply(kh, hd, rope_cos_sin_.data(), setup_.rope_interleaved);
      }
      // K and V of this position go into its sequence's block.
      std::byte* block = kv_pool_.data(run.blocks[static_cast<size_t>(pos / layout.block_tokens)]);
      const size_t in_block = static_cast<size_t>(pos % layout.block_tokens) * row;
      kv_from_f32(k + t * Hkv * hd, layout.dtype, Hkv * hd, block + k_offset + in_block);
      kv_from_f32(v + t * Hkv * hd, layout.dtype, Hkv * hd, block + v_offset + in_block);
    }
}

namespace {
// A head's K and V rows of the next block, requested while this block is
// worked on: each row is one head's slice (head_bytes, e.g. 128) of a
// token's row of every head (row, e.g. 1 KB), a stride the hardware
// prefetchers do not follow, and every read of them waited on memory: the
// conversion of K and V took ~4% of a decode step at ~200 positions. With
// the request, 1B Q4_0 decode alternating token by token in one process:
// 400 positions 48.9 -> 54.5 and 45.2 -> 49.3 tok/s, 1,500 positions 32.3
// -> 38.6 and 32.6 -> 41.7 (session 14). One row's pair at a time, beside
// the conversion of the same row of this block, not a block's 64 lines at
// once (more than the L1's miss buffers hold): 1,500 positions 40.0 ->
// 42.3, 40.6 -> 41.8, 49.3 -> 50.9, 49.1 -> 50.6 (session 15).
void prefetch_head_row(const std::byte* k_row, size_t v_offset, size_t head_bytes) {
  // Every line a slice touches, also where it does not start on one (Q8_0 heads of 68 bytes).
  auto slice = [head_bytes](const std::byte* p) {
    const uintptr_t first = reinterpret_cast<uintptr_t>(p);
    for (uintptr_t line = first & ~uintptr_t{63}; line < first + head_bytes; line += 64)
      __builtin_prefetch(reinterpret_cast<const void*>(line));
  };
  slice(k_row), slice(k_row + v_offset);
}
}  // namespace

// Flash-style attention on f32 tiles; no [T, positions] score matrix exists
// anywhere. Work items are (run, KV head): each KV block the run can see is
// converted to f32 once and serves every query head of the group for every
// token of the run; the scores of one token's group are one small tile
// product, the softmax is the online one (running max and denominator per
// query row), and the output rows accumulate in place.
void CpuBackend::attention(int64_t l, const float* q, float* out) {
  const ModelConfig& c = setup_.config;
  const int64_t H = c.n_heads, Hkv = c.n_kv_heads, hd = c.head_dim, group = H / Hkv;
  const KvLayout& layout = kv_pool_.layout();
  const DType kv_dtype = layout.dtype;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const size_t head_bytes = dtype_bytes(kv_dtype, static_cast<uint64_t>(hd)).value_or(0);
  const int64_t B = layout.block_tokens;
  const size_t row = layout.row_bytes(), layer_offset = static_cast<size_t>(l) * layout.layer_bytes();
  const int64_t max_tokens = setup_.max_tokens;
  const int64_t per_thread = 2 * B * hd + group * B + 2 * group * max_tokens;
  const std::span<const TokenRun> runs = pass_.runs;
  std::atomic<int> next_slot{0};
  threads_.parallel_for(static_cast<int64_t>(runs.size()) * Hkv, 1, [&](int64_t begin, int64_t end) {
    float* kf = attn_scratch_.as<float>() + static_cast<size_t>(next_slot++) * static_cast<size_t>(per_thread);  // [B, hd]
    float* vf = kf + B * hd;              // [B, hd]
    float* scores = vf + B * hd;          // [group, B]
    float* row_max = scores + group * B;  // [run tokens * group]
    float* denom = row_max + group * max_tokens;
    for (int64_t item = begin; item < end; ++item) {
      const TokenRun& run = runs[static_cast<size_t>(item / Hkv)];
      const int64_t t0 = run.first, t1 = run.end, kvh = item % Hkv;
      const int64_t first_pos = run.first_position, last = first_pos + (t1 - t0) - 1;
      auto q_rows = [&](int64_t t) { return q + (t * H + kvh * group) * hd; };  // [group, hd]
      auto o_rows = [&](int64_t t) { return out + (t * H + kvh * group) * hd; };
      for (int64_t t = t0; t < t1; ++t) std::fill(o_rows(t), o_rows(t) + group * hd, 0.0f);
      std::fill(row_max, row_max + (t1 - t0) * group, -std::numeric_limits<float>::infinity());
      std::fill(denom, denom + (t1 - t0) * group, 0.0f);
      for (int64_t p0 = 0; p0 <= last; p0 += B) {
        const std::byte* k_rows = kv_pool_.data(run.blocks[static_cast<size_t>(p0 / B)]) + layer_offset +
                                  static_cast<size_t>(kvh) * head_bytes;  // K of position p0 + i at i * row
        const std::byte* v_rows = k_rows + static_cast<size_t>(B) * row;
        const int64_t n = std::min(B, last + 1 - p0);
        const int64_t next_n = std::max<int64_t>(0, std::min(B, last + 1 - p0 - B));  // positions of the next block
        const std::byte* next_k = next_n > 0 ? kv_pool_.data(run.blocks[static_cast<size_t>(p0 / B + 1)]) + layer_offset +
                                                   static_cast<size_t>(kvh) * head_bytes
                                             : nullptr;
        for (int64_t i = 0; i < n; ++i) {
          if (i < next_n) prefetch_head_row(next_k + static_cast<size_t>(i) * row, static_cast<size_t>(B) * row, head_bytes);
          kv_to_f32(k_rows + static_cast<size_t>(i) * row, kv_dtype, hd, kf + i * hd);
          kv_to_f32(v_rows + static_cast<size_t>(i) * row, kv_dtype, hd, vf + i * hd);
        }
        // Causal: token t sees positions up to its own; the run's positions are consecutive.
        for (int64_t t = std::max(t0, t0 + p0 - first_pos); t < t1; ++t) {
          const int64_t seen = std::min(n, first_pos + (t - t0) - p0 + 1);  // keys of this block token t sees
          attn_scores(q_rows(t), hd, group, kf, seen, hd, scale, scores);  // [group, seen]
          for (int64_t g = 0; g < group; ++g) {
            float* s = scores + g * seen;
            const size_t r = static_cast<size_t>((t - t0) * group + g);
            float block_max = s[0];
            for (int64_t i = 1; i < seen; ++i) block_max = std::max(block_max, s[i]);
            const float m_new = std::max(row_max[r], block_max), correction = std::exp(row_max[r] - m_new);
            denom[r] = denom[r] * correction + exp_sum(s, seen, m_new);
            row_max[r] = m_new;
            float* o = o_rows(t) + g * hd;
            if (correction != 1.0f)
              for (int64_t i = 0; i < hd; ++i) o[i] *= correction;
          }
          attn_accumulate(scores, group, vf, seen, hd, o_rows(t), hd);
        }
      }
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t g = 0; g < group; ++g) {
          const float inv = 1.0f / denom[static_cast<size_t>((t - t0) * group + g)];
          float* o = o_rows(t) + g * hd;
          for (int64_t i = 0; i < hd; ++i) o[i] *= inv;
        }
    }
  });
}

void CpuBackend::swiglu(float* gate, const float* up, int64_t n) { cpu::swiglu(threads_, gate, up, n); }

void CpuBackend::add(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void CpuBackend::read(const float* src, int64_t n, float* host) {
  if (src != host) std::memcpy(host, src, static_cast<size_t>(n) * sizeof(float));
}

void CpuBackend::argmax(const float* src, int64_t rows, int64_t n, int32_t* host) {
  for (int64_t r = 0; r < rows; ++r)
    host[r] = static_cast<int32_t>(std::max_element(src + r * n, src + (r + 1) * n) - (src + r * n));
}

void CpuBackend::top_k(const float* src, int64_t rows, int64_t n, TopK* out) {
  for (int64_t r = 0; r < rows; ++r) {
    TopK& t = out[r];
    check_top_k_request(t);
    t.count = select_top_k(src + r * n, n, t.temperature, t.k, t.best.data());
  }
}

}  // namespace umi::cpu
