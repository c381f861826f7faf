// The forward pass of the Llama family (Llama 2/3, Mistral, Qwen2, Qwen3) over
// a chunk of T tokens of one sequence, top to bottom. Shapes in comments: T
// tokens, d hidden, H heads, Hkv kv heads, hd head_dim, F intermediate, V vocab.
#include <atomic>
#include <cmath>
#include <span>
#include <cstring>
#include <limits>

#include "backend/cpu/dot.h"
#include "backend/cpu/half.h"
#include "backend/cpu/quantize.h"
#include "core/error.h"
#include "model/model.h"

namespace umi {

namespace {

void store_kv(std::byte* dst, const float* src, int64_t n, DType dtype) { cpu::quantize_row(dtype, src, n, dst); }

void add_bias(float* x, int64_t tokens, const cpu::VectorView& bias) {
  if (!bias) return;
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < bias.size; ++i) x[t * bias.size + i] += bias.at(i);
}

}  // namespace

void Model::forward(std::span<const int32_t> tokens, int64_t pos0, SequenceKv& kv, float* logits) {
  const ModelConfig& c = config_;
  const int64_t T = static_cast<int64_t>(tokens.size());
  const int64_t d = c.hidden_size, H = c.n_heads, Hkv = c.n_kv_heads, hd = c.head_dim, F = c.intermediate_size;
  if (T < 1 || T > options_.prefill_chunk) throw Error("forward: chunk of " + std::to_string(T) + " tokens");
  if (pos0 < 0 || pos0 + T > c.max_context)
    throw InputError("position " + std::to_string(pos0 + T) + " is past the model's context of " + std::to_string(c.max_context));
  if (kv.capacity() < pos0 + T) throw Error("forward: KV cache not reserved");
  for (int32_t id : tokens)
    if (id < 0 || id >= c.vocab_size)
      throw InputError("token id " + std::to_string(id) + " is outside the vocabulary (0.." + std::to_string(c.vocab_size - 1) + ")");

  float* x = x_.as<float>();       // [T, d] residual stream
  float* xn = xn_.as<float>();     // [T, d] normed input of a block (and block outputs)
  float* q = q_.as<float>();       // [T, H*hd]
  float* k = k_.as<float>();       // [T, Hkv*hd]
  float* v = v_.as<float>();       // [T, Hkv*hd]
  float* gate = gate_.as<float>(); // [T, F]
  float* up = up_.as<float>();     // [T, F]
  const DType kv_dtype = kv_pool_.layout().dtype;

  // x[t] = embedding row of token t                                  [T, d]
  for (int64_t t = 0; t < T; ++t) cpu::dequantize_row(w_.embed, tokens[static_cast<size_t>(t)], x + t * d);

  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w_.layers[static_cast<size_t>(l)];

    // Attention block. xn = rmsnorm(x)                                [T, d]
    for (int64_t t = 0; t < T; ++t) cpu::rms_norm(x + t * d, L.attn_norm, d, static_cast<float>(c.rms_eps), xn + t * d);
    // q = xn Wq^T (+bq)                                               [T, H*hd]
    // k = xn Wk^T (+bk), v = xn Wv^T (+bv)                            [T, Hkv*hd]
    mm(L.wq, xn, T, q);
    mm(L.wk, xn, T, k);
    mm(L.wv, xn, T, v);
    add_bias(q, T, L.q_bias);
    add_bias(k, T, L.k_bias);
    add_bias(v, T, L.v_bias);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t h = 0; h < H; ++h) {
        float* qh = q + (t * H + h) * hd;  // [hd]
        if (L.q_norm) cpu::rms_norm(qh, L.q_norm, hd, static_cast<float>(c.rms_eps), qh);
        cpu::rope(qh, hd, inv_freq_.data(), pos0 + t, w_.rope_interleaved);
      }
      for (int64_t h = 0; h < Hkv; ++h) {
        float* kh = k + (t * Hkv + h) * hd;
        if (L.k_norm) cpu::rms_norm(kh, L.k_norm, hd, static_cast<float>(c.rms_eps), kh);
        cpu::rope(kh, hd, inv_freq_.data(), pos0 + t, w_.rope_interleaved);
      }
      // K and V of this position go into the sequence's KV blocks.
      store_kv(kv.k_at(l, pos0 + t), k + t * Hkv * hd, Hkv * hd, kv_dtype);
      store_kv(kv.v_at(l, pos0 + t), v + t * Hkv * hd, Hkv * hd, kv_dtype);
    }
    // attn = softmax(q K^T / sqrt(hd)) V over positions 0..pos         [T, H*hd]
    attention(l, T, pos0, kv);
    // x += attn Wo^T                                                   [T, d]
    mm(L.wo, attn_.as<float>(), T, xn);
    for (int64_t i = 0; i < T * d; ++i) x[i] += xn[i];

    // Feed-forward block. xn = rmsnorm(x)                              [T, d]
    for (int64_t t = 0; t < T; ++t) cpu::rms_norm(x + t * d, L.ffn_norm, d, static_cast<float>(c.rms_eps), xn + t * d);
    // gate = silu(xn Wg^T) * (xn Wu^T)                                 [T, F]
    mm(L.gate, xn, T, gate);
    mm(L.up, xn, T, up);
    cpu::swiglu(gate, up, T * F);
    // x += gate Wd^T                                                   [T, d]
    mm(L.down, gate, T, xn);
    for (int64_t i = 0; i < T * d; ++i) x[i] += xn[i];
  }

  if (!logits) return;
  // logits = rmsnorm(x[T-1]) Wout^T                                    [V]
  cpu::rms_norm(x + (T - 1) * d, w_.final_norm, d, static_cast<float>(c.rms_eps), xn);
  mm(w_.output, xn, 1, logits_.as<float>());
  std::memcpy(logits, logits_.data(), static_cast<size_t>(c.vocab_size) * sizeof(float));
}

// Flash-style attention over the paged cache: one pass over each (token,
// head)'s keys with an online softmax, block by block; no [T, positions]
// score matrix exists anywhere.
void Model::attention(int64_t l, int64_t T, int64_t pos0, const SequenceKv& kv) {
  const ModelConfig& c = config_;
  const int64_t H = c.n_heads, Hkv = c.n_kv_heads, hd = c.head_dim, group = H / Hkv;
  const DType kv_dtype = kv_pool_.layout().dtype;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const float* q = q_.as<float>();
  float* out = attn_.as<float>();
  const size_t head_bytes = dtype_bytes(kv_dtype, static_cast<uint64_t>(hd)).value_or(0);
  const cpu::DotFn score_dot = cpu::dot_function(kv_dtype);
  // Each thread's output accumulator lives in the pool's attention scratch.
  std::atomic<int> next_slot{0};
  threads_.parallel_for(T * H, 1, [&](int64_t begin, int64_t end) {
    std::span<float> acc(attn_scratch_.as<float>() + static_cast<size_t>(next_slot++) * static_cast<size_t>(hd + options_.kv_block_tokens),
                         static_cast<size_t>(hd));
    for (int64_t th = begin; th < end; ++th) {
      const int64_t t = th / H, h = th % H, kvh = h / group;
      const float* qh = q + (t * H + h) * hd;
      float m = -std::numeric_limits<float>::infinity(), denom = 0;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t p = 0; p <= pos0 + t; ++p) {  // causal: this token and those before
        const std::byte* kp = kv.k_at(l, p) + static_cast<size_t>(kvh) * head_bytes;
        const float s = score_dot(kp, qh, hd) * scale;
        const float m_new = std::max(m, s);
        const float correction = std::exp(m - m_new), w = std::exp(s - m_new);
        denom = denom * correction + w;
        cpu::scale_add(acc.data(), correction, w, kv.v_at(l, p) + static_cast<size_t>(kvh) * head_bytes, kv_dtype, hd);
        m = m_new;
      }
      float* o = out + (t * H + h) * hd;
      for (int64_t i = 0; i < hd; ++i) o[i] = acc[static_cast<size_t>(i)] / denom;
    }
  });
}

}  // namespace umi
