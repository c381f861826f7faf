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

void CpuBackend::draw(const float* src, int64_t rows, int64_t n, TokenDraw* out) {
  for (int64_t r = 0; r < rows; ++r) out[r].token = draw_token(src + r * n, n, out[r], draw_scratch_);
}

void CpuBackend::mask_logits(float* logits, int64_t n, const uint32_t* allowed) {
  if (n < 0 || (n > 0 && (!logits || !allowed))) throw Error("mask_logits: bad arguments");
  for (int64_t i = 0; i < n; ++i)
    if (!(allowed[i >> 5] >> (i & 31) & 1)) logits[i] = -std::numeric_limits<float>::infinity();
}

}  // namespace umi::cpu
