// One sequence on a model: its KV blocks and position. feed() runs tokens
// through the model in chunks of at most the model's prefill chunk, growing the
// KV cache block by block; the blocks go back when the sequence is destroyed.
#pragma once

#include <span>
#include <vector>

#include "model/model.h"

namespace umi {

class Sequence {
 public:
  explicit Sequence(Model& model) : model_(model), kv_(model.kv_pool()) {}

  // Runs the tokens and returns the logits after the last one ([vocab]).
  // Refuses (OutOfMemory, before any work) when their KV cannot fit, saying
  // how many tokens would; InputError past the model's context.
  std::vector<float> feed(std::span<const int32_t> tokens);
  // The same, bringing back only what sampling needs (Backend::argmax,
  // Backend::top_k, Backend::draw): the argmax of the logits, `top`'s
  // candidates (its k and temperature set by the caller), or the token
  // `draw` draws (its settings set by the caller, its token out).
  int32_t feed_argmax(std::span<const int32_t> tokens);
  void feed_top_k(std::span<const int32_t> tokens, TopK& top);
  void feed_draw(std::span<const int32_t> tokens, TokenDraw& draw);

  int64_t position() const { return position_; }
  const SequenceKv& kv() const { return kv_; }
  void reset();  // forget everything, give the blocks back

 private:
  // Runs the tokens; the last chunk's item gets `last` (its outputs).
  void run(std::span<const int32_t> tokens, const ForwardItem& last);

  Model& model_;
  SequenceKv kv_;
  int64_t position_ = 0;
};

}  // namespace umi
