// Sampling from the whole vocabulary (top-k off, the OpenAI API's default)
// as a rule that a GPU computes where the logits are, so that only the token
// crosses to the host (4 bytes instead of a 513 KB Llama-3 row), and that
// the host computes the same way, bit for bit (draw_math.h), so that a
// request draws the same tokens on either side of the seam: with logprobs
// (the row comes back) or without, on the CPU backend or a GPU's.
//
// The rule, for a row of logits x and settings (temperature t, top_p,
// min_p, key):
//   - candidates: every i whose x_i and v_i = x_i / t are finite;
//   - weights w_i = e^(v_i - max v) (draw::exp), masses draw::weight_mass;
//   - min-p keeps w_i >= min_p;
//   - top-p < 1 keeps the nucleus: in the order (w descending, i ascending),
//     the shortest prefix whose mass reaches draw::nucleus_target;
//   - of what both keep, the token is the argmax of v_i + draw::gumbel(key,
//     i) (the lowest i of equal scores). Gumbel-max: token i wins with
//     probability w_i / (sum of kept w), as a softmax draw.
#pragma once

#include <cstdint>
#include <vector>

namespace umi {

// One row's request and answer.
struct TokenDraw {
  float temperature = 1.0f;  // in: finite, > 0
  float top_p = 1.0f;        // in: (0, 1]; 1 is off
  float min_p = 0.0f;        // in: [0, 1]; 0 is off
  uint64_t key = 0;          // in: the draw's randomness (a sampler's generator)
  int32_t token = -1;        // out: the token, or -1 when no candidate is finite
};

// Throws umi::Error unless the settings are in range: what every backend's
// draw checks first.
void check_draw_request(const TokenDraw& d);

// Working memory of draw_token, kept between calls so that a draw a token
// does not allocate: n values, and with min-p or top-p n weights and the
// ids where the nucleus ends.
struct DrawScratch {
  std::vector<float> values, weights;
  std::vector<int32_t> ids;
};

// The reference: the token the rule above draws from `row` (n logits), or
// -1 when none is a candidate. The form without scratch makes its own.
int32_t draw_token(const float* row, int64_t n, const TokenDraw& d, DrawScratch& scratch);
int32_t draw_token(const float* row, int64_t n, const TokenDraw& d);

}  // namespace umi
