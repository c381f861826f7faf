// Sampling from the whole vocabulary on the device: each row's token drawn
// by backend/token_draw.h's rule, the same bits as the host's draw_token
// (the arithmetic is draw_math.h's, compiled here without FMA contraction).
//
// Two kernels. The cut (one block a row, only rows with min-p or top-p):
// the best value; with top-p, the weights (kept in scratch) and their
// exact fixed-point total, then a radix select over the weights' bits, ten
// bits a pass, for the nucleus's last token. The pick (4096 logits a
// block): every kept token's score v + noise, the best packed as a 64-bit
// key (the score's bits made monotonic, then the complement of the id) and
// merged with atomicMax, so that the order of the blocks does not matter.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace umi::cuda {

// A row's settings, in device memory.
struct DrawSettings {
  float temperature;  // finite, > 0
  float top_p;        // (0, 1]
  float min_p;        // [0, 1]
  uint32_t key_lo, key_hi;
};

// Scratch for draw_rows (bytes, 8-byte aligned).
size_t draw_scratch_bytes(int64_t rows, int64_t n);

// best[r] = the drawn token's key for row r of x [rows, n] with settings[r]
// (device); 0 when no logit of the row is a candidate. draw_token_of turns
// a key into the token. rows < 65536, n < 2^31.
cudaError_t draw_rows(const float* x, int64_t rows, int64_t n, const DrawSettings* settings, unsigned long long* best, void* scratch,
                      size_t scratch_bytes, cudaStream_t stream);

// A key back into its token: -1 for key 0 (host and device).
inline int32_t draw_token_of(unsigned long long key) {
  return key == 0 ? -1 : static_cast<int32_t>(0xFFFFFFFFu - static_cast<uint32_t>(key));
}

}  // namespace umi::cuda
