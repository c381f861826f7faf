// A single token's attention over a run of one KV head's keys, fused (each
// instruction-set build compiles it, as dot_impl.h): the keys go sixteen at
// a time through a tile on the stack (converted from the cache's type once),
// each query row of the group takes the tile's scores as vectors with one
// key per lane (a running sum per key, added across by rounds of shuffles
// rather than a horizontal sum per key), updates its online softmax, and
// accumulates the values into its output row. The AVX-512 build does this
// 512 bits at a time for head dims that are multiples of 16, the others
// 256 (AVX2) or 128 (baseline). Before, the decode step called the tile
// kernels per block and head: a horizontal sum per score, a call per row
// converted, the converted block written to scratch and read back; at 1,500
// positions attention took ~30% of a 1B Q4_0 step's samples. One call (16
// keys, 4 query rows, hd 64, f16, in cache): 433 ns with 8-key tiles, 289
// with these (session 16).
#pragma once

#include <algorithm>
#include <limits>

#include "backend/cpu/dot_impl.h"
#include "backend/cpu/elementwise_impl.h"

namespace umi::cpu {
namespace {

// Keys (and values) per tile of attn_keys.
constexpr int kKeyTile = 16;

// Rows j < nt of the keys and values at k and v (stride apart, type t) as
// floats: kt and vt are [kKeyTile, hd]; key rows nt.. are zeros (finite
// scores, which the callers mask).
inline void load_tiles(const std::byte* k, const std::byte* v, size_t stride, DType t, int nt, int64_t hd, float* kt, float* vt) {
  for (int j = 0; j < nt; ++j) {
    const std::byte* kj = k + static_cast<size_t>(j) * stride;
    const std::byte* vj = v + static_cast<size_t>(j) * stride;
    if (t == DType::F16 && hd % 8 == 0) {  // the default cache type, in line: a call per row cost ~5% of the kernel
      int64_t d = 0;
#if defined(__AVX512F__)
      for (; d + 16 <= hd; d += 16) {  // 512 bits: ~4% of a call against 256
        _mm512_storeu_ps(kt + j * hd + d, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(kj + 2 * d))));
        _mm512_storeu_ps(vt + j * hd + d, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(vj + 2 * d))));
      }
#endif
      for (; d < hd; d += 8) {
        const v8f kf = f16x8_to_f32(kj + 2 * d), vf = f16x8_to_f32(vj + 2 * d);
        std::memcpy(kt + j * hd + d, &kf, sizeof kf);
        std::memcpy(vt + j * hd + d, &vf, sizeof vf);
      }
    } else {
      impl_kv_to_f32(kj, t, hd, kt + j * hd);
      impl_kv_to_f32(vj, t, hd, vt + j * hd);
    }
  }
  std::fill(kt + nt * hd, kt + kKeyTile * hd, 0.0f);
}

// o (hd values) = o * correction + sum_j p[j] * vt[j * hd], j < Keys (or
// < nt where Keys is 0).
template <int Keys>
inline void accumulate_values(float* o, float correction, const float* p, const float* vt, int nt, int64_t hd, int64_t hd8) {
  const int keys = Keys > 0 ? Keys : nt;
  for (int64_t d = 0; d < hd8; d += 8) {
    v8f acc = load_f32(o + d) * correction;
    for (int j = 0; j < keys; ++j) acc += p[j] * load_f32(vt + j * hd + d);
    std::memcpy(o + d, &acc, sizeof acc);
  }
  for (int64_t d = hd8; d < hd; ++d) {
    float acc = o[d] * correction;
    for (int j = 0; j < keys; ++j) acc += p[j] * vt[j * hd + d];
    o[d] = acc;
  }
}

// The contract is dot.h's attn_keys; hd <= kAttnKeysMaxHeadDim. Tiles of
// 16 keys: the softmax's per-tile work (a max, two exponentials of eight, a
// correction) spread over twice the keys of an 8-key tile.
void attn_keys_by8(const float* q, int64_t nq, const std::byte* k, const std::byte* v, size_t stride, DType t, int64_t n,
                    int64_t hd, float scale, float* row_max, float* denom, float* o) {
  constexpr int kTile = kKeyTile;
  alignas(32) float kt[kTile * kAttnKeysMaxHeadDim], vt[kTile * kAttnKeysMaxHeadDim];
  const int64_t hd8 = hd / 8 * 8;
  for (int64_t j0 = 0; j0 < n; j0 += kTile) {
    const int nt = static_cast<int>(std::min<int64_t>(kTile, n - j0));
    load_tiles(k + static_cast<size_t>(j0) * stride, v + static_cast<size_t>(j0) * stride, stride, t, nt, hd, kt, vt);
    for (int64_t g = 0; g < nq; ++g) {
      const float* qg = q + g * hd;
      alignas(32) float p[kTile];
      const v8f s0 = eight_scores(qg, kt, hd, hd8) * scale, s1 = eight_scores(qg, kt + 8 * hd, hd, hd8) * scale;
      std::memcpy(p, &s0, sizeof s0);
      std::memcpy(p + 8, &s1, sizeof s1);
      float block_max = p[0];
      for (int j = 1; j < nt; ++j) block_max = std::max(block_max, p[j]);
      const float m_new = std::max(row_max[g], block_max);
      const float correction = m_new == row_max[g] ? 1.0f : std::exp(row_max[g] - m_new);  // the max often holds
      const v8f p0 = exp_v8(s0 - m_new), p1 = exp_v8(s1 - m_new);
      std::memcpy(p, &p0, sizeof p0);
      std::memcpy(p + 8, &p1, sizeof p1);
      std::fill(p + nt, p + kTile, 0.0f);
      denom[g] = denom[g] * correction + hsum(load_f32(p) + load_f32(p + 8));
      row_max[g] = m_new;
      if (nt == kTile)
        accumulate_values<kTile>(o + g * hd, correction, p, vt, nt, hd, hd8);
      else
        accumulate_values<0>(o + g * hd, correction, p, vt, nt, hd, hd8);
    }
  }
}

#if defined(__AVX512F__)
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

inline v16f load_f32x16(const void* p) {
  v16f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// r[j] = the sum of a[j]'s sixteen lanes: pairs of vectors interleaved and
// added within 128-bit lanes, then fours, then the four lanes' sums across.
inline v16f sum_each16(const v16f a[16]) {
  v16f b[8], d[4];
  for (int i = 0; i < 8; ++i)
    b[i] = __builtin_shufflevector(a[2 * i], a[2 * i + 1], 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29) +
           __builtin_shufflevector(a[2 * i], a[2 * i + 1], 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31);
  for (int i = 0; i < 4; ++i)  // lane L of d[i]: the sums of lane L of a[4i..4i+3]
    d[i] = __builtin_shufflevector(b[2 * i], b[2 * i + 1], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29) +
           __builtin_shufflevector(b[2 * i], b[2 * i + 1], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
  const v16f u0 = __builtin_shufflevector(d[0], d[1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
                  __builtin_shufflevector(d[0], d[1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  const v16f u1 = __builtin_shufflevector(d[2], d[3], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
                  __builtin_shufflevector(d[2], d[3], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  return __builtin_shufflevector(u0, u1, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
         __builtin_shufflevector(u0, u1, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
}

inline v16f exp_v16(v16f x) {
  const v8f lo = exp_v8(__builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7)),
            hi = exp_v8(__builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15));
  return __builtin_shufflevector(lo, hi, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

// attn_keys for head dims that are multiples of 16, 512 bits at a time (the
// AVX-512 build): half the instructions of attn_keys_by8 for the same
// tile, with each score vector one key per lane.
void attn_keys_by16(const float* q, int64_t nq, const std::byte* k, const std::byte* v, size_t stride, DType t, int64_t n,
                    int64_t hd, float scale, float* row_max, float* denom, float* o) {
  constexpr int kTile = kKeyTile;
  alignas(64) float kt[kTile * kAttnKeysMaxHeadDim], vt[kTile * kAttnKeysMaxHeadDim];
  const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  for (int64_t j0 = 0; j0 < n; j0 += kTile) {
    const int nt = static_cast<int>(std::min<int64_t>(kTile, n - j0));
    load_tiles(k + static_cast<size_t>(j0) * stride, v + static_cast<size_t>(j0) * stride, stride, t, nt, hd, kt, vt);
    const v16i live = lane < nt;
    // Four query rows at a time, each phase over all four before the next:
    // a row's steps depend on each other (scores, max, exponentials, sum),
    // the rows do not, and the core overlaps them only when they sit close.
    constexpr int kRows = 4;
    for (int64_t g0 = 0; g0 < nq; g0 += kRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kRows, nq - g0));
      v16f p[kRows];
      float correction[kRows];
      for (int r = 0; r < rows; ++r) {
        const float* qg = q + (g0 + r) * hd;
        v16f a[kTile] = {};
        for (int64_t d = 0; d < hd; d += 16) {
          const v16f x = load_f32x16(qg + d);
          for (int j = 0; j < kTile; ++j) a[j] += x * load_f32x16(kt + j * hd + d);
        }
        p[r] = live ? sum_each16(a) * scale : -std::numeric_limits<float>::infinity();
      }
      for (int r = 0; r < rows; ++r) {
        __m512 sv;
        std::memcpy(&sv, &p[r], sizeof sv);
        float& m = row_max[g0 + r];
        const float m_new = std::max(m, _mm512_reduce_max_ps(sv));
        correction[r] = m_new == m ? 1.0f : std::exp(m - m_new);  // the max often holds
        m = m_new;
        p[r] = live ? exp_v16(p[r] - m_new) : 0.0f;
        std::memcpy(&sv, &p[r], sizeof sv);
        denom[g0 + r] = denom[g0 + r] * correction[r] + _mm512_reduce_add_ps(sv);
      }
      for (int r = 0; r < rows; ++r) {
        float* og = o + (g0 + r) * hd;
        for (int64_t d = 0; d < hd; d += 16) {
          v16f acc = load_f32x16(og + d) * correction[r];
          for (int j = 0; j < nt; ++j) acc += p[r][j] * load_f32x16(vt + j * hd + d);
          std::memcpy(og + d, &acc, sizeof acc);
        }
      }
    }
  }
}
#endif

void impl_attn_keys(const float* q, int64_t nq, const std::byte* k, const std::byte* v, size_t stride, DType t, int64_t n,
                    int64_t hd, float scale, float* row_max, float* denom, float* o) {
#if defined(__AVX512F__)
  if (hd % 16 == 0) return attn_keys_by16(q, nq, k, v, stride, t, n, hd, scale, row_max, denom, o);
#endif
  attn_keys_by8(q, nq, k, v, stride, t, n, hd, scale, row_max, denom, o);
}

}  // namespace
}  // namespace umi::cpu
