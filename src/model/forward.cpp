// The forward pass of the Llama family (Llama 2/3, Mistral, Qwen2, Qwen3) over
// T tokens of one or more sequences (each at its own positions, with its own
// KV blocks), top to bottom. Shapes in comments: T
// tokens, d hidden, H heads, Hkv kv heads, hd head_dim, F intermediate, V vocab.
#include <algorithm>
#include <span>
#include <utility>
#include <vector>

#include "core/error.h"
#include "model/model.h"

namespace umi {

// Checks every item and lays the pass out for the backend: each token's id
// and position, and the runs of consecutive tokens of one sequence.
void Model::plan_pass(std::span<const ForwardItem> items) {
  const ModelConfig& c = config_;
  if (items.empty() || static_cast<int64_t>(items.size()) > options_.max_batch)
    throw Error("forward: " + std::to_string(items.size()) + " sequences in one pass (max " + std::to_string(options_.max_batch) + ")");
  pass_ids_.clear();
  pass_positions_.clear();
  pass_runs_.clear();
  for (const ForwardItem& it : items) {
    const int64_t n = static_cast<int64_t>(it.tokens.size());
    const int64_t first = static_cast<int64_t>(pass_ids_.size());
    if (n < 1 || first + n > options_.prefill_chunk)
      throw Error("forward: more than " + std::to_string(options_.prefill_chunk) + " tokens in one pass");
    if (it.pos0 < 0 || it.pos0 + n > c.max_context)
      throw InputError("position " + std::to_string(it.pos0 + n) + " is past the model's context of " + std::to_string(c.max_context));
    if (!it.kv || it.kv->capacity() < it.pos0 + n) throw Error("forward: KV cache not reserved");
    for (int64_t i = 0; i < n; ++i) {
      const int32_t id = it.tokens[static_cast<size_t>(i)];
      if (id < 0 || id >= c.vocab_size)
        throw InputError("token id " + std::to_string(id) + " is outside the vocabulary (0.." + std::to_string(c.vocab_size - 1) + ")");
      pass_ids_.push_back(id);
      pass_positions_.push_back(it.pos0 + i);
    }
    if ((it.logits != nullptr) + (it.token != nullptr) + (it.top != nullptr) + (it.draw != nullptr) > 1)
      throw Error("forward: an item asks for more than one of its logits, argmax, candidates and draw");
    pass_runs_.push_back({first, first + n, it.pos0, it.kv->block_table(), it.outputs()});
  }
}

void Model::forward(std::span<const ForwardItem> items) {
  const ModelConfig& c = config_;
  const int64_t d = c.hidden_size;
  plan_pass(items);
  const int64_t T = static_cast<int64_t>(pass_ids_.size());
  Backend& b = *backend_;
  b.begin_pass({pass_ids_, pass_positions_, pass_runs_});

  float* x = x_.as<float>();       // [T, d] residual stream
  float* xn = xn_.as<float>();     // [T, d] normed input of a block (and block outputs)
  float* q = q_.as<float>();       // [T, H*hd]
  float* k = k_.as<float>();       // [T, Hkv*hd]
  float* v = v_.as<float>();       // [T, Hkv*hd]
  float* attn = attn_.as<float>(); // [T, H*hd]
  float* gate = gate_.as<float>(); // [T, F]
  float* up = up_.as<float>();     // [T, F]

  // x[t] = embedding row of token t                                  [T, d]
  b.embed(w_.embed, x);

  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = w_.layers[static_cast<size_t>(l)];

    // Attention block. xn = rmsnorm(x)                                [T, d]
    b.rms_norm(x, L.attn_norm, T, xn);
    // q = xn Wq^T (+bq)                                               [T, H*hd]
    // k = xn Wk^T (+bk), v = xn Wv^T (+bv)                            [T, Hkv*hd]
    const Backend::Product qkv[] = {{L.wq, q}, {L.wk, k}, {L.wv, v}};
    b.matmuls(xn, T, qkv);
    b.add_bias(q, L.q_bias, T);
    b.add_bias(k, L.k_bias, T);
    b.add_bias(v, L.v_bias, T);
    // q, k = rope(norm(q)), rope(norm(k)) at each token's position; k and v
    // into each token's sequence's KV blocks
    b.rope_store_kv(l, q, k, v, L.q_norm, L.k_norm);
    // attn = softmax(q K^T / sqrt(hd)) V over each token's own sequence,
    // positions 0..its own                                             [T, H*hd]
    b.attention(l, q, attn);
    // x += attn Wo^T                                                   [T, d]
    b.matmul(L.wo, attn, T, xn);
    b.add(x, xn, T * d);

    // Feed-forward block. xn = rmsnorm(x)                              [T, d]
    b.rms_norm(x, L.ffn_norm, T, xn);
    // gate = silu(xn Wg^T) * (xn Wu^T)  (up: scratch)                  [T, F]
    b.gated_matmul(L.gate, L.up, xn, T, gate, up);
    // x += gate Wd^T                                                   [T, d]
    b.matmul(L.down, gate, T, xn);
    b.add(x, xn, T * d);
  }

  // logits[i] = rmsnorm(x[last token of item i]) Wout^T               [items with outputs, V]
  const int64_t rows = norm_outputs(items, x, xn);
  if (rows == 0) return;
  float* logits = logits_.as<float>();  // [rows, V]
  b.matmul(w_.output, xn, rows, logits);
  mask_outputs(items, logits);
  copy_outputs(items, logits);
}

// Consecutive last tokens (a decode step: one token per item) are one norm.
int64_t Model::norm_outputs(std::span<const ForwardItem> items, const float* x, float* xn) {
  const int64_t d = config_.hidden_size;
  int64_t rows = 0, end = 0, run_x = 0, run_rows = 0;
  auto norm_run = [&] {
    if (run_rows > 0) backend_->rms_norm(x + run_x * d, w_.final_norm, run_rows, xn + (rows - run_rows) * d);
    run_rows = 0;
  };
  for (const ForwardItem& it : items) {
    end += static_cast<int64_t>(it.tokens.size());
    if (!it.outputs()) continue;
    if (run_rows > 0 && run_x + run_rows != end - 1) norm_run();
    if (run_rows == 0) run_x = end - 1;
    ++run_rows, ++rows;
  }
  norm_run();
  return rows;
}

// Constrained rows: the pass is started first, so that the host works out
// what each row allows while a GPU computes it.
void Model::mask_outputs(std::span<const ForwardItem> items, float* logits) {
  const int64_t V = config_.vocab_size;
  if (std::none_of(items.begin(), items.end(), [](const ForwardItem& it) { return it.allowed && it.selects(); })) return;
  backend_->launch();
  // Every row's bits first: a GPU's first mask may wait for the pass (a copy
  // from pageable memory does), and the host's work should all be beside it.
  std::vector<std::pair<int64_t, const uint32_t*>> masks;
  int64_t row = 0;
  for (const ForwardItem& it : items) {
    if (!it.outputs()) continue;
    if (it.allowed && it.selects())
      if (const uint32_t* allowed = it.allowed()) masks.emplace_back(row, allowed);
    ++row;
  }
  for (const auto& [r, allowed] : masks) backend_->mask_logits(logits + r * V, V, allowed);
}

// Rows to the host (logits), their argmax (token), their candidates
// (top) or their drawn token (draw), a run of rows with consecutive destinations at a time (the
// engine's rows are one buffer of each kind).
void Model::copy_outputs(std::span<const ForwardItem> items, const float* logits) {
  const int64_t V = config_.vocab_size;
  int64_t row = 0, first = 0, count = 0;
  float* dest = nullptr;
  int32_t* dest_token = nullptr;
  TopK* dest_top = nullptr;
  TokenDraw* dest_draw = nullptr;
  auto flush = [&] {
    if (count > 0 && dest) backend_->read(logits + first * V, count * V, dest);
    if (count > 0 && dest_token) backend_->argmax(logits + first * V, count, V, dest_token);
    if (count > 0 && dest_top) backend_->top_k(logits + first * V, count, V, dest_top);
    if (count > 0 && dest_draw) backend_->draw(logits + first * V, count, V, dest_draw);
    count = 0;
  };
  for (const ForwardItem& it : items) {
    if (!it.outputs()) continue;
    const bool joins = count > 0 && (it.logits  ? dest && it.logits == dest + count * V
                                     : it.token ? dest_token && it.token == dest_token + count
                                     : it.top   ? dest_top && it.top == dest_top + count
                                                : dest_draw && it.draw == dest_draw + count);
    if (!joins) {
      flush();
      first = row, dest = it.logits, dest_token = it.token, dest_top = it.top, dest_draw = it.draw;  // one of them (plan_pass)
    }
    ++count, ++row;
  }
  flush();
}

}  // namespace umi
