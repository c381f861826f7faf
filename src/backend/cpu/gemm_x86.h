// Tiled integer GEMM for quantized weights and many tokens (prefill chunks,
// batched decode), TU-local like dot_x86.h, which includes it.
//
// Weights stay where they are in the file. Eight rows at a time are decoded
// once into a per-thread scratch in an interleaved form (register g holds
// bytes 4g..4g+3 of each of the 8 rows, as unsigned bytes), so that one
// multiply-add of a register with 4 broadcast activation bytes feeds all 8
// rows, and the float epilogue (convert, scale, accumulate) is shared by 8
// rows instead of paid per row. Signed formats are shifted to unsigned
// bytes by a constant (w + offset) and corrected with offset * sum(q),
// except where w + offset can pass 127 without VNNI (Q8_0, IQ4: offset 128):
// vpmaddubsw would saturate its int16 pairs, so the 8-row tiles keep |w| as
// the unsigned operand and w itself to move its sign onto the activations
// (vpsignb), one more instruction a multiply-add (sign_split).
#pragma once

#include "backend/cpu/gemm.h"

namespace umi::cpu {
namespace {

// Rows r0..r0+7 of one 32-value sub-block, ready for the kernel.
struct alignas(32) PackedSub {
  __m256i w[8];     // w[g] lane r: row r's unsigned bytes 4g..4g+3 (sign_split: |w|)
  __m256 scale[2];  // lane r: row r's scale for values 0-15 and 16-31
  __m256 min;       // lane r: row r's min (formats with one; Q2_K: of values 0-15)
  __m256 min_hi;    // Q2_K: lane r's min of values 16-31 (other formats leave it unwritten)
  __m256i sign[8];  // sign_split: the signed bytes whose magnitudes w holds (others leave it unwritten)
};
static_assert(sizeof(PackedSub) <= kGemmPackedSubBytes);

// Whether the 8-row tiles of format F split its signed bytes into |w| and
// a sign (above): formats with offset 128, in builds without VNNI.
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
template <class F>
constexpr bool sign_split = false;
#else
template <class F>
constexpr bool sign_split = F::offset == 128;
#endif
// The constant the packed bytes are shifted by (0 where sign_split).
template <class F>
constexpr int packed_offset = sign_split<F> ? 0 : F::offset;

// lanes -> 8x8 transpose of 32-bit elements.
inline void transpose8(__m256i r[8]) {
  const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
  const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
  const __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
  const __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
  const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
  const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
  const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
  const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
  r[0] = _mm256_permute2x128_si256(u0, u4, 0x20), r[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
  r[1] = _mm256_permute2x128_si256(u1, u5, 0x20), r[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
  r[2] = _mm256_permute2x128_si256(u2, u6, 0x20), r[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
  r[3] = _mm256_permute2x128_si256(u3, u7, 0x20), r[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

// One block column of R rows decoded, each row once: per sub-block s, the
// unsigned weight bytes of row r in w[s][r] and its scales and min in the
// arrays (transposed and stored by the tile writers below).
template <class F, int R>
struct BlockColumn {
  alignas(64) float sc0[F::subs][R], sc1[F::subs][R], mn[F::subs][R], mn1[F::subs][R];
  __m256i w[F::subs][R];

  void decode(const std::byte* row0, size_t row_bytes, int64_t b) {
    for (int r = 0; r < R; ++r) {
      const F f = make_format<F>(row0 + static_cast<size_t>(r) * row_bytes + b * F::bytes);
      for (int s = 0; s < F::subs; ++s) {
        w[s][r] = _mm256_add_epi8(f.weights(s), _mm256_set1_epi8(static_cast<char>(packed_offset<F>)));
        const __m256 scale = f.scale(s);
        sc0[s][r] = _mm256_cvtss_f32(scale);
        sc1[s][r] = _mm_cvtss_f32(_mm256_extractf128_ps(scale, 1));
        if constexpr (has_half_mins<F>) mn[s][r] = f.min_half(s, 0), mn1[s][r] = f.min_half(s, 1);
        else mn[s][r] = f.min(s);  // mn1 unused
      }
    }
  }
};

template <class F>
void pack_rows(const std::byte* row0, size_t row_bytes, int64_t cols, PackedSub* out) {
  BlockColumn<F, 8> c;
  for (int64_t b = 0; b < cols / F::elems; ++b) {
    c.decode(row0, row_bytes, b);
    for (int s = 0; s < F::subs; ++s) {
      PackedSub& p = out[b * F::subs + s];
      transpose8(c.w[s]);
      for (int g = 0; g < 8; ++g) {
        if constexpr (sign_split<F>) p.w[g] = _mm256_abs_epi8(c.w[s][g]), p.sign[g] = c.w[s][g];
        else p.w[g] = c.w[s][g];
      }
      p.scale[0] = _mm256_load_ps(c.sc0[s]);
      p.scale[1] = _mm256_load_ps(c.sc1[s]);
      p.min = _mm256_load_ps(c.mn[s]);
      if constexpr (has_half_mins<F>) p.min_hi = _mm256_load_ps(c.mn1[s]);
    }
  }
}

inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(acc, u, s);
#else
  return _mm256_add_epi32(acc, dot_u8_i8(u, s));
#endif
}

// y[t * y_stride + lane] for NT tokens and the 8 packed rows.
template <class F, int NT>
void gemm_tokens(const PackedSub* packed, int64_t subs, const Q8Block* const* x, float* const* y) {
  constexpr bool per_half = has_half_scales<F>;
  __m256 acc[NT];
  for (int j = 0; j < NT; ++j) acc[j] = _mm256_setzero_ps();
  for (int64_t s = 0; s < subs; ++s) {
    const PackedSub& p = packed[s];
    for (int j = 0; j < NT; ++j) {
      const Q8Block& a = x[j][s];
      // Activation bytes are broadcast straight from memory (a load-port
      // operation); going through a general register costs a shuffle-port
      // uop per broadcast and was a third of the loop.
      auto bcast = [](const void* at) { return _mm256_broadcastd_epi32(_mm_loadu_si32(at)); };
      // Two chains of four multiply-adds per token: with four tokens, eight
      // independent chains keep the multiply-add units busy. (Eight tokens
      // of one chain each measured slower: the registers run out.)
      __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
      const auto act = [&](int g) {
        if constexpr (sign_split<F>) return _mm256_sign_epi8(bcast(a.q + 4 * g), p.sign[g]);
        else return bcast(a.q + 4 * g);
      };
      for (int g = 0; g < 4; ++g) {
        lo = dpbusd(lo, p.w[g], act(g));
        hi = dpbusd(hi, p.w[g + 4], act(g + 4));
      }
      const __m256 ad = _mm256_set1_ps(a.d);
      if constexpr (per_half) {
        if constexpr (packed_offset<F> != 0) {  // offset * sum of each half, from the packed int16 pair
          const __m256i sums = bcast(a.sum);
          lo = _mm256_sub_epi32(lo, _mm256_madd_epi16(sums, _mm256_set1_epi32(packed_offset<F> & 0xFFFF)));
          hi = _mm256_sub_epi32(hi, _mm256_madd_epi16(sums, _mm256_set1_epi32(packed_offset<F> << 16)));
        }
        acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), _mm256_mul_ps(p.scale[0], ad), acc[j]);
        acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), _mm256_mul_ps(p.scale[1], ad), acc[j]);
      } else {
        __m256i sum = _mm256_add_epi32(lo, hi);
        if constexpr (packed_offset<F> != 0)  // offset * (sum0 + sum1) in one multiply-add of the int16 pair
          sum = _mm256_sub_epi32(sum, _mm256_madd_epi16(bcast(a.sum), _mm256_set1_epi16(static_cast<int16_t>(packed_offset<F>))));
        acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(p.scale[0], ad), acc[j]);
      }
      if constexpr (has_half_mins<F>)
        acc[j] = _mm256_fmadd_ps(p.min_hi, _mm256_set1_ps(a.d * a.sum[1]), _mm256_fmadd_ps(p.min, _mm256_set1_ps(a.d * a.sum[0]), acc[j]));
      else if constexpr (!F::is_signed)
        acc[j] = _mm256_fmadd_ps(p.min, _mm256_set1_ps(a.d * a.qsum()), acc[j]);
    }
  }
  for (int j = 0; j < NT; ++j) _mm256_storeu_ps(y[j], acc[j]);
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
// The AVX-512 build: 16 rows per tile, one 512-bit register per group of
// four bytes, so every broadcast activation word and every float epilogue
// instruction serves 16 rows (the front end, not the multiply-add units,
// limited the 8-row form).
struct alignas(64) PackedSub16 {
  __m512i w[8];     // w[g] lane r: row r's unsigned bytes 4g..4g+3
  __m512 scale[2];  // lane r: row r's scale for values 0-15 and 16-31
  __m512 min, min_hi;  // as PackedSub's
};
static_assert(sizeof(PackedSub16) == kGemmPackedSubBytes);
inline constexpr int64_t kTileRows = 16;

template <class F>
void pack_tile(const std::byte* row0, size_t row_bytes, int64_t cols, PackedSub16* out) {
  BlockColumn<F, 16> c;
  for (int64_t b = 0; b < cols / F::elems; ++b) {
    c.decode(row0, row_bytes, b);
    for (int s = 0; s < F::subs; ++s) {
      PackedSub16& p = out[b * F::subs + s];
      transpose8(c.w[s]);
      transpose8(c.w[s] + 8);
      for (int g = 0; g < 8; ++g) p.w[g] = _mm512_inserti64x4(_mm512_castsi256_si512(c.w[s][g]), c.w[s][8 + g], 1);
      p.scale[0] = _mm512_load_ps(c.sc0[s]);
      p.scale[1] = _mm512_load_ps(c.sc1[s]);
      p.min = _mm512_load_ps(c.mn[s]);
      if constexpr (has_half_mins<F>) p.min_hi = _mm512_load_ps(c.mn1[s]);
    }
  }
}

template <class F, int NT>
void gemm_tokens(const PackedSub16* packed, int64_t subs, const Q8Block* const* x, float* const* y) {
  constexpr bool per_half = has_half_scales<F>;
  auto bcast = [](const void* at) { return _mm512_broadcastd_epi32(_mm_loadu_si32(at)); };
  __m512 acc[NT];
  for (int j = 0; j < NT; ++j) acc[j] = _mm512_setzero_ps();
  for (int64_t s = 0; s < subs; ++s) {
    const PackedSub16& p = packed[s];
    for (int j = 0; j < NT; ++j) {
      const Q8Block& a = x[j][s];
      // Two chains of four multiply-adds per token (see the 8-row form).
      __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
      for (int g = 0; g < 4; ++g) {
        lo = _mm512_dpbusd_epi32(lo, p.w[g], bcast(a.q + 4 * g));
        hi = _mm512_dpbusd_epi32(hi, p.w[g + 4], bcast(a.q + 4 * (g + 4)));
      }
      const __m512 ad = _mm512_set1_ps(a.d);
      if constexpr (per_half) {
        if constexpr (F::offset != 0) {
          const __m512i sums = bcast(a.sum);
          lo = _mm512_sub_epi32(lo, _mm512_madd_epi16(sums, _mm512_set1_epi32(F::offset & 0xFFFF)));
          hi = _mm512_sub_epi32(hi, _mm512_madd_epi16(sums, _mm512_set1_epi32(F::offset << 16)));
        }
        acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo), _mm512_mul_ps(p.scale[0], ad), acc[j]);
        acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), _mm512_mul_ps(p.scale[1], ad), acc[j]);
      } else {
        __m512i sum = _mm512_add_epi32(lo, hi);
        if constexpr (F::offset != 0)
          sum = _mm512_sub_epi32(sum, _mm512_madd_epi16(bcast(a.sum), _mm512_set1_epi16(static_cast<int16_t>(F::offset))));
        acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(p.scale[0], ad), acc[j]);
      }
      if constexpr (has_half_mins<F>)
        acc[j] = _mm512_fmadd_ps(p.min_hi, _mm512_set1_ps(a.d * a.sum[1]), _mm512_fmadd_ps(p.min, _mm512_set1_ps(a.d * a.sum[0]), acc[j]));
      else if constexpr (!F::is_signed)
        acc[j] = _mm512_fmadd_ps(p.min, _mm512_set1_ps(a.d * a.qsum()), acc[j]);
    }
  }
  for (int j = 0; j < NT; ++j) _mm512_storeu_ps(y[j], acc[j]);
}
using Tile = PackedSub16;
#else
inline constexpr int64_t kTileRows = 8;
template <class F>
void pack_tile(const std::byte* row0, size_t row_bytes, int64_t cols, PackedSub* out) {
  pack_rows<F>(row0, row_bytes, cols, out);
}
using Tile = PackedSub;
#endif

template <class F>
int64_t qgemm(const GemmArgs& g) {
  const int64_t subs = g.cols / 32;
  auto* packed = static_cast<Tile*>(g.pack);
  const int64_t end = g.row_begin + (g.row_end - g.row_begin) / kTileRows * kTileRows;
  for (int64_t r0 = g.row_begin; r0 < end; r0 += kTileRows) {
    pack_tile<F>(g.w + static_cast<size_t>(r0) * g.row_bytes, g.row_bytes, g.cols, packed);
    // The next tile's rows are fetched from memory while these are
    // multiplied, so that packing them reads cache, not DRAM (the weights
    // stream from the mapping once per step and no hardware prefetcher
    // follows this many strided rows far enough ahead).
    if (r0 + 2 * kTileRows <= end) {
      const char* next = reinterpret_cast<const char*>(g.w + static_cast<size_t>(r0 + kTileRows) * g.row_bytes);
      for (size_t off = 0; off < kTileRows * g.row_bytes; off += 64) _mm_prefetch(next + off, _MM_HINT_T0);
    }
    int64_t t = 0;
    auto run = [&]<int NT>(std::integral_constant<int, NT>) {
      const Q8Block* xs[NT];
      float* ys[NT];
      for (int j = 0; j < NT; ++j) xs[j] = g.x + (t + j) * subs, ys[j] = g.y + (t + j) * g.y_stride + r0;
      gemm_tokens<F, NT>(packed, subs, xs, ys);
      t += NT;
    };
    while (t + 4 <= g.tokens) run(std::integral_constant<int, 4>{});
    if (g.tokens - t == 3) run(std::integral_constant<int, 3>{});
    if (g.tokens - t == 2) run(std::integral_constant<int, 2>{});
    if (g.tokens - t == 1) run(std::integral_constant<int, 1>{});
  }
  return end - g.row_begin;
}

QGemmFn x86_qgemm(DType t) {
  switch (t) {
    case DType::Q8_0: return qgemm<Q8_0F>;
    case DType::IQ4_NL: return qgemm<IQ4NLF>;
    case DType::IQ4_XS: return qgemm<IQ4XSF>;
    case DType::Q3_K: return qgemm<Q3KF>;
    case DType::Q2_K: return qgemm<Q2KF>;
    case DType::Q4_0: return qgemm<Q4_0F>;
    case DType::Q4_1: return qgemm<Q4_1F>;
    case DType::Q5_0: return qgemm<Q5F<false>>;
    case DType::Q5_1: return qgemm<Q5F<true>>;
    case DType::Q4_K: return qgemm<Q45KF<false>>;
    case DType::Q5_K: return qgemm<Q45KF<true>>;
    case DType::Q6_K: return qgemm<Q6KF>;
    default: return nullptr;
  }
}

}  // namespace
}  // namespace umi::cpu
