// The forward pass of the Llama family (Llama 2/3, Mistral, Qwen2, Qwen3) over
// T tokens of one or more sequences (each at its own positions, with its own
// KV blocks), top to bottom. Shapes in comments: T
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

void Model::forward(std::span<const ForwardItem> items) {
  const ModelConfig& c = config_;
  const int64_t d = c.hidden_size, H = c.n_heads, Hkv = c.n_kv_heads, hd = c.head_dim, F = c.intermediate_size;
  if (items.empty() || static_cast<int64_t>(items.size()) > options_.max_batch)
    throw Error("forward: " + std::to_string(items.size()) + " sequences in one pass (max " + std::to_string(options_.max_batch) + ")");
  // Where each of the T tokens belongs, after checking every item.
  slots_.clear();
  std::vector<int32_t>& tokens = pass_tokens_;
  tokens.clear();
  for (const ForwardItem& it : items) {
    const int64_t n = static_cast<int64_t>(it.tokens.size());
    if (n < 1 || static_cast<int64_t>(slots_.size()) + n > options_.prefill_chunk)
      throw Error("forward: more than " + std::to_string(options_.prefill_chunk) + " tokens in one pass");
    if (it.pos0 < 0 || it.pos0 + n > c.max_context)
      throw InputError("position " + std::to_string(it.pos0 + n) + " is past the model's context of " + std::to_string(c.max_context));
    if (!it.kv || it.kv->capacity() < it.pos0 + n) throw Error("forward: KV cache not reserved");
    for (int64_t i = 0; i < n; ++i) {
      const int32_t id = it.tokens[static_cast<size_t>(i)];
      if (id < 0 || id >= c.vocab_size)
        throw InputError("token id " + std::to_string(id) + " is outside the vocabulary (0.." + std::to_string(c.vocab_size - 1) + ")");
      slots_.push_back({it.kv, it.pos0 + i});
      tokens.push_back(id);
    }
  }
  const int64_t T = static_cast<int64_t>(slots_.size());

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
      // One position's rotation angles serve all its heads.
      cpu::rope_angles(hd, inv_freq_.data(), slots_[static_cast<size_t>(t)].position, rope_cos_sin_.data());
      for (int64_t h = 0; h < H; ++h) {
        float* qh = q + (t * H + h) * hd;  // [hd]
        if (L.q_norm) cpu::rms_norm(qh, L.q_norm, hd, static_cast<float>(c.rms_eps), qh);
        cpu::rope_apply(qh, hd, rope_cos_sin_.data(), w_.rope_interleaved);
      }
      for (int64_t h = 0; h < Hkv; ++h) {
        float* kh = k + (t * Hkv + h) * hd;
        if (L.k_norm) cpu::rms_norm(kh, L.k_norm, hd, static_cast<float>(c.rms_eps), kh);
        cpu::rope_apply(kh, hd, rope_cos_sin_.data(), w_.rope_interleaved);
      }
      // K and V of this position go into its sequence's KV blocks.
      const TokenSlot& slot = slots_[static_cast<size_t>(t)];
      store_kv(slot.kv->k_at(l, slot.position), k + t * Hkv * hd, Hkv * hd, kv_dtype);
      store_kv(slot.kv->v_at(l, slot.position), v + t * Hkv * hd, Hkv * hd, kv_dtype);
    }
    // attn = softmax(q K^T / sqrt(hd)) V over each token's own sequence,
    // positions 0..its own                                             [T, H*hd]
    attention(l, T);
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

  // logits[i] = rmsnorm(x[last token of item i]) Wout^T               [items with logits, V]
  int64_t rows = 0, end = 0;
  for (const ForwardItem& it : items) {
    end += static_cast<int64_t>(it.tokens.size());
    if (it.logits) cpu::rms_norm(x + (end - 1) * d, w_.final_norm, d, static_cast<float>(c.rms_eps), xn + rows++ * d);
  }
  if (rows == 0) return;
  mm(w_.output, xn, rows, logits_.as<float>());
  rows = 0;
  for (const ForwardItem& it : items)
    if (it.logits)
      std::memcpy(it.logits, logits_.as<float>() + rows++ * c.vocab_size, static_cast<size_t>(c.vocab_size) * sizeof(float));
}

// Flash-style attention over the paged cache: one pass over each (token,
// head)'s keys with an online softmax, block by block; no [T, positions]
// score matrix exists anywhere.
// Flash-style attention on f32 tiles. Work items are (sequence run, KV head):
// a run is the consecutive tokens of one sequence in this pass (a prefill
// chunk, or one decode token). Each KV block the run can see is converted to
// f32 once and serves every query head of the group for every token of the
// run; the scores of one token's group are one small tile product, the
// softmax is the online one (running max and denominator per query row), and
// the output rows accumulate in place.
void Model::attention(int64_t l, int64_t T) {
  const ModelConfig& c = config_;
  const int64_t H = c.n_heads, Hkv = c.n_kv_heads, hd = c.head_dim, group = H / Hkv;
  const DType kv_dtype = kv_pool_.layout().dtype;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const float* q = q_.as<float>();
  float* out = attn_.as<float>();  // [T, H*hd]
  const size_t head_bytes = dtype_bytes(kv_dtype, static_cast<uint64_t>(hd)).value_or(0);
  const KvLayout& layout = kv_pool_.layout();
  const int64_t B = layout.block_tokens;
  const size_t row = layout.row_bytes(), layer_offset = static_cast<size_t>(l) * layout.layer_bytes();
  runs_.clear();
  for (int64_t t = 0; t < T; ++t)
    if (t == 0 || slots_[static_cast<size_t>(t)].kv != slots_[static_cast<size_t>(t - 1)].kv) runs_.push_back({t, t + 1});
    else runs_.back().second = t + 1;
  const int64_t per_thread = 2 * B * hd + group * B + 2 * group * options_.prefill_chunk;
  std::atomic<int> next_slot{0};
  threads_.parallel_for(static_cast<int64_t>(runs_.size()) * Hkv, 1, [&](int64_t begin, int64_t end) {
    float* kf = attn_scratch_.as<float>() + static_cast<size_t>(next_slot++) * static_cast<size_t>(per_thread);  // [B, hd]
    float* vf = kf + B * hd;            // [B, hd]
    float* scores = vf + B * hd;        // [group, B]
    float* row_max = scores + group * B;  // [run tokens * group]
    float* denom = row_max + group * options_.prefill_chunk;
    for (int64_t item = begin; item < end; ++item) {
      const auto [t0, t1] = runs_[static_cast<size_t>(item / Hkv)];
      const int64_t kvh = item % Hkv;
      const SequenceKv& kv = *slots_[static_cast<size_t>(t0)].kv;
      const int64_t first_pos = slots_[static_cast<size_t>(t0)].position, last = slots_[static_cast<size_t>(t1 - 1)].position;
      auto q_rows = [&](int64_t t) { return q + (t * H + kvh * group) * hd; };  // [group, hd]
      auto o_rows = [&](int64_t t) { return out + (t * H + kvh * group) * hd; };
      for (int64_t t = t0; t < t1; ++t) std::fill(o_rows(t), o_rows(t) + group * hd, 0.0f);
      std::fill(row_max, row_max + (t1 - t0) * group, -std::numeric_limits<float>::infinity());
      std::fill(denom, denom + (t1 - t0) * group, 0.0f);
      for (int64_t p0 = 0; p0 <= last; p0 += B) {
        const std::byte* k_rows = kv_pool_.data(kv.block_table()[static_cast<size_t>(p0 / B)]) + layer_offset +
                                  static_cast<size_t>(kvh) * head_bytes;  // K of position p0 + i at i * row
        const std::byte* v_rows = k_rows + static_cast<size_t>(B) * row;
        const int64_t n = std::min(B, last + 1 - p0);
        for (int64_t i = 0; i < n; ++i) {
          cpu::kv_to_f32(k_rows + static_cast<size_t>(i) * row, kv_dtype, hd, kf + i * hd);
          cpu::kv_to_f32(v_rows + static_cast<size_t>(i) * row, kv_dtype, hd, vf + i * hd);
        }
        // Causal: token t sees positions up to its own; the run's positions are consecutive.
        for (int64_t t = std::max(t0, t0 + p0 - first_pos); t < t1; ++t) {
          const int64_t seen = std::min(n, first_pos + (t - t0) - p0 + 1);  // keys of this block token t sees
          cpu::attn_scores(q_rows(t), hd, group, kf, seen, hd, scale, scores);  // [group, seen]
          for (int64_t g = 0; g < group; ++g) {
            float* s = scores + g * seen;
            const size_t r = static_cast<size_t>((t - t0) * group + g);
            float block_max = s[0];
            for (int64_t i = 1; i < seen; ++i) block_max = std::max(block_max, s[i]);
            const float m_new = std::max(row_max[r], block_max), correction = std::exp(row_max[r] - m_new);
            float sum = 0;
            for (int64_t i = 0; i < seen; ++i) sum += (s[i] = std::exp(s[i] - m_new));
            denom[r] = denom[r] * correction + sum;
            row_max[r] = m_new;
            float* o = o_rows(t) + g * hd;
            if (correction != 1.0f)
              for (int64_t i = 0; i < hd; ++i) o[i] *= correction;
          }
          cpu::attn_accumulate(scores, group, vf, seen, hd, o_rows(t), hd);
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

}  // namespace umi
