#include "backend/cpu/quantize.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>

#include "backend/cpu/half.h"
#include "backend/cpu/quant_blocks.h"

namespace umi::cpu {

namespace {

void put16(std::byte* p, uint16_t v) { std::memcpy(p, &v, 2); }
void put32(std::byte* p, uint32_t v) { std::memcpy(p, &v, 4); }
float f16_round(float v) { return f16_to_f32(f32_to_f16(v)); }
int nearest(float v) { return static_cast<int>(std::lround(v)); }
// Ties to even, as ggml's nearest_int, without a library call (lround is
// one): the K-quants' fits round ~30 times a value. 1.5 x 2^23 added leaves
// the rounded value in the low mantissa bits, for |v| < 2^22 (v is clamped
// there first; NaN gives some value, which callers clamp).
int round_even(float v) {
  const float big = std::clamp(v, -4194303.0f, 4194303.0f) + 12582912.0f;
  int32_t bits;
  std::memcpy(&bits, &big, 4);
  return (bits & 0x007FFFFF) - 0x00400000;
}
// v rounded (ties to even) and clamped to [lo, hi], as a float: the fits'
// inner loops stay in float registers (no conversions). The sum and the
// difference round exactly for |v| < 2^22, which the clamp ensures.
// min/max, not std::clamp: they compile to minss/maxss where clamp's
// branches mispredicted (Q4_K quantized 1.5x slower with them).
float round_clamped(float v, float lo, float hi) { return (std::min(std::max(v, lo), hi) + 12582912.0f) - 12582912.0f; }

// The value of largest magnitude, with its sign.
float signed_max(const float* x, int n) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), max = x[i];
  return max;
}

// The K-quants' sub-block scales by weighted least squares, as ggml's
// make_qx_quants / make_qkx2_quants search them without an importance
// matrix: a few trial scales around the extremes' one each pick q by
// rounding, the scale (and offset) that fits x best for those q in
// closed form, and the best fit is kept. The weights are ggml's: they
// favour the large values. On the bundled model (mean KL divergence from
// the f32 model's next-token distributions over 3,000 positions,
// umi_bench_quant_quality) they beat the extremes-only scales for every
// type (Q2_K 0.114 -> 0.092, Q3_K 0.023 -> 0.021, Q4_K 0.0060 -> 0.0048),
// where unweighted fits, though better by RMS, lost at Q2_K. The search
// costs time: a 1B Q4_K conversion takes ~4x as long (40 s on 2 cores).
enum class Weighting { square, magnitude, magnitude_plus_rms };
struct Group {
  const float* x;
  float w[32];
  int n;
  Group(const float* values, int count, Weighting how) : x(values), w{}, n(count) {
    double sum_sq = 0;
    for (int i = 0; i < n; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
    const float rms = static_cast<float>(std::sqrt(sum_sq / n));
    for (int i = 0; i < n; ++i)
      w[i] = how == Weighting::square ? x[i] * x[i] : how == Weighting::magnitude ? std::fabs(x[i]) : rms + std::fabs(x[i]);
  }
};

// x ~ s q, q = -nmax..nmax - 1 (Q3_K, Q6_K): s.
float fit_symmetric(const Group& g, int nmax) {
  const float max = signed_max(g.x, g.n);
  if (max == 0.0f) return 0.0f;
  float best_s = max / static_cast<float>(-nmax);
  double best = -1;  // sum(w q x)^2 / sum(w q^2): how much of sum(w x^2) the fit explains
  for (int trial = -9; trial <= 9; ++trial) {
    const float iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(trial)) / max;
    float part_qx[4] = {}, part_qq[4] = {};  // partial sums, as in fit_with_min
    for (int i = 0; i < g.n; i += 4)
      for (int k = 0; k < 4; ++k) {
        const float q = round_clamped(g.x[i + k] * iscale, static_cast<float>(-nmax), static_cast<float>(nmax - 1));
        part_qx[k] += g.w[i + k] * q * g.x[i + k], part_qq[k] += g.w[i + k] * q * q;
      }
    const double sqx = static_cast<double>(part_qx[0]) + part_qx[1] + part_qx[2] + part_qx[3],
                 sqq = static_cast<double>(part_qq[0]) + part_qq[1] + part_qq[2] + part_qq[3];
    if (sqq > 0 && sqx * sqx / sqq > best) best = sqx * sqx / sqq, best_s = static_cast<float>(sqx / sqq);
  }
  return best_s;
}

// x ~ s q - m, q = 0..top, m >= 0 (Q2_K, Q4_K, Q5_K: the offset is a
// non-negative multiple of dmin): {s, m}.
struct ScaleMin {
  float scale, min;
};
double fit_error(const Group& g, int top, ScaleMin f) {
  float part[4] = {};  // partial sums, as in fit_with_min
  const float inv = f.scale > 0 ? 1.0f / f.scale : 0.0f;
  for (int i = 0; i < g.n; i += 4)
    for (int k = 0; k < 4; ++k) {
      const float q = round_clamped((g.x[i + k] + f.min) * inv, 0.0f, static_cast<float>(top));
      const float d = f.scale * q - f.min - g.x[i + k];
      part[k] += g.w[i + k] * d * d;
    }
  return static_cast<double>(part[0]) + part[1] + part[2] + part[3];
}

ScaleMin fit_with_min(const Group& g, int top) {
  const float lo = std::min(0.0f, *std::min_element(g.x, g.x + g.n)), hi = *std::max_element(g.x, g.x + g.n);
  ScaleMin best{(hi - lo) / static_cast<float>(top), -lo};
  if (!(hi > lo)) return best;
  double best_err = fit_error(g, top, best);
  for (int trial = -10; trial <= 10; ++trial) {
    const float iscale = (static_cast<float>(top) + 0.1f * static_cast<float>(trial)) / (hi - lo);
    // Four float partial sums of each (n is a multiple of 16): with the
    // rounding branch-free, one double chain a sum made the Q4_K quantizer
    // 1.4x slower (87 against 63 ms a million values).
    float part[6][4] = {};
    for (int i = 0; i < g.n; i += 4)
      for (int k = 0; k < 4; ++k) {
        const float q = round_clamped((g.x[i + k] - lo) * iscale, 0.0f, static_cast<float>(top)), w = g.w[i + k], x = g.x[i + k];
        part[0][k] += w, part[1][k] += w * q, part[2][k] += w * x, part[3][k] += w * q * q, part[4][k] += w * q * x, part[5][k] += w * x * x;
      }
    double sum[6];
    for (int j = 0; j < 6; ++j) sum[j] = static_cast<double>(part[j][0]) + part[j][1] + part[j][2] + part[j][3];
    const double sw = sum[0], sq = sum[1], sx = sum[2], sqq = sum[3], sqx = sum[4], sxx = sum[5];
    const double det = sw * sqq - sq * sq;
    if (!(det > 0)) continue;
    double sc = (sw * sqx - sq * sx) / det, b = (sx - sc * sq) / sw;  // x ~ sc q + b
    if (b > 0) b = 0, sc = sqx / sqq;  // the offset cannot be positive
    if (!(sc > 0)) continue;
    // The fit's error for these q, from the sums (rounding again against the
    // fit only lowers it; the stored scales round again at the end).
    const double e = sc * sc * sqq + 2 * sc * b * sq + b * b * sw - 2 * sc * sqx - 2 * b * sx + sxx;
    if (e < best_err) best_err = e, best = {static_cast<float>(sc), static_cast<float>(-b)};
  }
  return best;
}

// The stored integers for a fitted {s, m}: sc (step d sc) and mq (offset
// dmin mq) at most `most`, the pair among the nearest ones, one either side,
// that fits x best; rounding each alone costs the 4-bit scales of Q2_K most.
struct StoredScale {
  int sc, m;
};
StoredScale store_scale_min(const Group& g, int top, ScaleMin f, float d, float dmin, int most) {
  const int sc0 = d > 0 ? std::clamp(round_even(f.scale / d), 0, most) : 0, m0 = dmin > 0 ? std::clamp(round_even(f.min / dmin), 0, most) : 0;
  StoredScale best{sc0, m0};
  double best_err = fit_error(g, top, {d * static_cast<float>(sc0), dmin * static_cast<float>(m0)});
  for (int sc = std::max(0, sc0 - 1); sc <= std::min(most, sc0 + 1); ++sc)
    for (int m = std::max(0, m0 - 1); m <= std::min(most, m0 + 1); ++m) {
      const double e = fit_error(g, top, {d * static_cast<float>(sc), dmin * static_cast<float>(m)});
      if (e < best_err) best_err = e, best = {sc, m};
    }
  return best;
}

// d = max / -8, q = clamp(x/d + 8.5) as ggml's quantize_row_q4_0_ref; the
// 5-bit form the same with 16 levels a side.
void quantize_centred(const float* x, int bits, std::byte* blk) {
  const int half = 1 << (bits - 1), top = (1 << bits) - 1;
  const float d = signed_max(x, 32) / static_cast<float>(-half), id = d != 0.0f ? 1.0f / d : 0.0f;
  put16(blk, f32_to_f16(d));
  uint8_t q[32];
  for (int i = 0; i < 32; ++i) q[i] = static_cast<uint8_t>(std::min(top, static_cast<int>(x[i] * id + static_cast<float>(half) + 0.5f)));
  std::byte* qs = blk + (bits == 5 ? 6 : 2);
  uint32_t qh = 0;
  for (int i = 0; i < 16; ++i) {
    qs[i] = static_cast<std::byte>((q[i] & 0xF) | ((q[i + 16] & 0xF) << 4));
    qh |= static_cast<uint32_t>((q[i] >> 4) & 1) << i | static_cast<uint32_t>((q[i + 16] >> 4) & 1) << (i + 16);
  }
  if (bits == 5) put32(blk + 2, qh);
}

// x = d*q + m with m the block's minimum: ggml's q4_1 / q5_1.
void quantize_with_min(const float* x, int bits, std::byte* blk) {
  const int top = (1 << bits) - 1;
  const float lo = *std::min_element(x, x + 32), hi = *std::max_element(x, x + 32);
  const float d = (hi - lo) / static_cast<float>(top), id = d != 0.0f ? 1.0f / d : 0.0f;
  put16(blk, f32_to_f16(d));
  put16(blk + 2, f32_to_f16(lo));
  uint8_t q[32];
  for (int i = 0; i < 32; ++i) q[i] = static_cast<uint8_t>(std::clamp(static_cast<int>((x[i] - lo) * id + 0.5f), 0, top));
  std::byte* qs = blk + (bits == 5 ? 8 : 4);
  uint32_t qh = 0;
  for (int i = 0; i < 16; ++i) {
    qs[i] = static_cast<std::byte>((q[i] & 0xF) | ((q[i + 16] & 0xF) << 4));
    qh |= static_cast<uint32_t>((q[i] >> 4) & 1) << i | static_cast<uint32_t>((q[i + 16] >> 4) & 1) << (i + 16);
  }
  if (bits == 5) put32(blk + 4, qh);
}

// Q4_K / Q5_K: each sub-block of 32 gets a fitted scale and non-negative
// min offset (fit_with_min); both are then stored as 6-bit multiples of the
// block's d and dmin, and the values re-quantized against the stored ones.
void quantize_q45k(const float* x, bool five_bit, std::byte* blk) {
  const int top = five_bit ? 31 : 15;
  float scale[8], offset[8];
  std::array<std::optional<Group>, 8> group;  // each sub-block's weights, for the fit and the storing
  for (int s = 0; s < 8; ++s) {
    group[s].emplace(x + 32 * s, 32, Weighting::magnitude_plus_rms);
    const ScaleMin f = fit_with_min(*group[s], top);
    scale[s] = f.scale, offset[s] = f.min;
  }
  const float max_scale = *std::max_element(scale, scale + 8), max_offset = *std::max_element(offset, offset + 8);
  const float d = f16_round(max_scale / 63.0f), dmin = f16_round(max_offset / 63.0f);
  uint8_t sc[8], m[8];
  for (int s = 0; s < 8; ++s) {
    const StoredScale st = store_scale_min(*group[s], top, {scale[s], offset[s]}, d, dmin, 63);
    sc[s] = static_cast<uint8_t>(st.sc), m[s] = static_cast<uint8_t>(st.m);
  }
  put16(blk, f32_to_f16(d));
  put16(blk + 2, f32_to_f16(dmin));
  pack_k_scales(sc, m, blk + 4);
  uint8_t q[256];
  for (int s = 0; s < 8; ++s) {
    const float step = d * sc[s], off = dmin * m[s];
    for (int l = 0; l < 32; ++l)
      q[32 * s + l] = static_cast<uint8_t>(step > 0 ? std::clamp(round_even((x[32 * s + l] + off) / step), 0, top) : 0);
  }
  std::byte* qh = blk + 16;
  std::byte* qs = blk + (five_bit ? 48 : 16);
  if (five_bit) std::memset(qh, 0, 32);
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      const uint8_t a = q[64 * c + l], b = q[64 * c + 32 + l];
      qs[32 * c + l] = static_cast<std::byte>((a & 0xF) | ((b & 0xF) << 4));
      if (five_bit) qh[l] |= static_cast<std::byte>(((a >> 4) << (2 * c)) | ((b >> 4) << (2 * c + 1)));
    }
}

// Q6_K: a fitted signed scale per 16 values (fit_symmetric), stored as
// int8 multiples of the block's d.
void quantize_q6k(const float* x, std::byte* blk) {
  float scale[16];
  for (int g = 0; g < 16; ++g) scale[g] = fit_symmetric(Group(x + 16 * g, 16, Weighting::square), 32);
  float max_scale = 0;
  for (float s : scale)
    if (std::fabs(s) > std::fabs(max_scale)) max_scale = s;
  const float d = f16_round(max_scale / -128.0f);
  auto* ql = reinterpret_cast<uint8_t*>(blk);
  uint8_t* qh = ql + 128;
  std::memset(blk, 0, 192);
  for (int g = 0; g < 16; ++g) {
    const int sc = d != 0.0f ? std::clamp(round_even(scale[g] / d), -128, 127) : 0;
    blk[192 + g] = static_cast<std::byte>(static_cast<int8_t>(sc));
    const float step = d * static_cast<float>(sc);
    for (int l = 0; l < 16; ++l) {
      const int i = 16 * g + l;
      const int q = (step != 0.0f ? std::clamp(round_even(x[i] / step), -32, 31) : 0) + 32;
      // Where q6k_value (quant_blocks.h) reads element i from.
      const int half = i / 128, w = i % 128, grp = w / 32, pos = w % 32;
      ql[64 * half + pos + 32 * (grp & 1)] |= static_cast<uint8_t>(grp < 2 ? (q & 0xF) : (q & 0xF) << 4);
      qh[32 * half + pos] |= static_cast<uint8_t>((q >> 4) << (2 * grp));
    }
  }
  put16(blk + 208, f32_to_f16(d));
}

// Q3_K: a fitted signed scale per 16 values (fit_symmetric), stored as
// 6-bit multiples (sc - 32) of the block's d; q = -4..3 as two bits in qs and
// a high bit in hmask (set: q = bits, clear: bits - 4).
void quantize_q3k(const float* x, std::byte* blk) {
  float scale[16], max_scale = 0;
  for (int g = 0; g < 16; ++g) {
    scale[g] = fit_symmetric(Group(x + 16 * g, 16, Weighting::square), 4);
    if (std::fabs(scale[g]) > std::fabs(max_scale)) max_scale = scale[g];
  }
  const float d = f16_round(max_scale / -32.0f);
  std::memset(blk, 0, 110);
  for (int g = 0; g < 16; ++g) {
    const int sc = d != 0.0f ? std::clamp(round_even(scale[g] / d), -32, 31) : 0;
    const int v = sc + 32;  // where q3k_scale (quant_blocks.h) reads it from
    blk[96 + (g < 8 ? g : g - 8)] |= static_cast<std::byte>(g < 8 ? v & 0xF : (v & 0xF) << 4);
    blk[96 + 8 + g % 4] |= static_cast<std::byte>((v >> 4) << (2 * (g / 4)));
    const float step = d * static_cast<float>(sc);
    for (int l = 0; l < 16; ++l) {
      const int i = 16 * g + l, u = (step != 0.0f ? std::clamp(round_even(x[i] / step), -4, 3) : 0) + 4;
      blk[32 + 32 * (i / 128) + i % 32] |= static_cast<std::byte>((u & 3) << (2 * (i % 128 / 32)));
      blk[i % 32] |= static_cast<std::byte>((u >> 2) << (i / 32));
    }
  }
  put16(blk + 108, f32_to_f16(d));
}

// Q2_K: per 16 values a fitted scale and non-negative min offset
// (fit_with_min), both 4-bit multiples of the block's d and dmin; q = 0..3.
void quantize_q2k(const float* x, std::byte* blk) {
  float scale[16], offset[16];
  std::array<std::optional<Group>, 16> group;  // as in quantize_q45k
  for (int g = 0; g < 16; ++g) {
    group[g].emplace(x + 16 * g, 16, Weighting::magnitude);
    const ScaleMin f = fit_with_min(*group[g], 3);
    scale[g] = f.scale, offset[g] = f.min;
  }
  const float d = f16_round(*std::max_element(scale, scale + 16) / 15.0f), dmin = f16_round(*std::max_element(offset, offset + 16) / 15.0f);
  std::memset(blk, 0, 84);
  for (int g = 0; g < 16; ++g) {
    const StoredScale st = store_scale_min(*group[g], 3, {scale[g], offset[g]}, d, dmin, 15);
    const int sc = st.sc, m = st.m;
    blk[g] = static_cast<std::byte>(sc | m << 4);
    const float step = d * static_cast<float>(sc), off = dmin * static_cast<float>(m);
    for (int l = 0; l < 16; ++l) {
      const int i = 16 * g + l, q = step > 0 ? std::clamp(round_even((x[i] + off) / step), 0, 3) : 0;
      blk[16 + 32 * (i / 128) + i % 32] |= static_cast<std::byte>(q << (2 * (i % 128 / 32)));
    }
  }
  put16(blk + 80, f32_to_f16(d));
  put16(blk + 82, f32_to_f16(dmin));
}

// The IQ4 level nearest v (the levels ascend): the first not below v, or
// the one before it.
int nearest_iq4(float v) {
  const int8_t* above = std::lower_bound(kIq4nlValues, kIq4nlValues + 16, v, [](int8_t level, float x) { return level < x; });
  if (above == kIq4nlValues) return 0;
  if (above == kIq4nlValues + 16) return 15;
  const int k = static_cast<int>(above - kIq4nlValues);
  return v - kIq4nlValues[k - 1] <= kIq4nlValues[k] - v ? k - 1 : k;
}

// The least-squares scale of 32 values over IQ4 levels, tried from 15
// starting scales around max / -127 as ggml's quantize_row_iq4_nl_impl
// does (unweighted here): each start picks levels, the scale that fits
// those levels best is kept if it explains more of x.
float iq4_scale(const float* x) {
  const float max = signed_max(x, 32);
  if (max == 0.0f) return 0.0f;
  float best_d = 0, best = -1;
  for (int attempt = -7; attempt <= 7; ++attempt) {
    const float id = (static_cast<float>(attempt) + kIq4nlValues[0]) / max;
    double sumqx = 0, sumq2 = 0;
    for (int i = 0; i < 32; ++i) {
      const double q = kIq4nlValues[nearest_iq4(x[i] * id)];
      sumqx += q * x[i], sumq2 += q * q;
    }
    if (sumq2 > 0 && sumqx * sumqx / sumq2 > best) best = static_cast<float>(sumqx * sumqx / sumq2), best_d = static_cast<float>(sumqx / sumq2);
  }
  return best_d;
}

// 32 values as IQ4 nibbles at qs against the stored scale d.
void put_iq4_nibbles(const float* x, float d, std::byte* qs) {
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < 16; ++i)
    qs[i] = static_cast<std::byte>(nearest_iq4(x[i] * id) | nearest_iq4(x[i + 16] * id) << 4);
}

void quantize_iq4nl(const float* x, std::byte* blk) {
  const float d = f16_round(iq4_scale(x));
  put16(blk, f32_to_f16(d));
  put_iq4_nibbles(x, d, blk + 2);
}

// IQ4_XS: each sub-block's own best scale (iq4_scale), stored as a 6-bit
// multiple (ls - 32) of the block's d (largest magnitude -> -32), then the
// values against the stored scale.
void quantize_iq4xs(const float* x, std::byte* blk) {
  float scale[8], max_scale = 0;
  for (int s = 0; s < 8; ++s) {
    scale[s] = iq4_scale(x + 32 * s);
    if (std::fabs(scale[s]) > std::fabs(max_scale)) max_scale = scale[s];
  }
  const float d = f16_round(max_scale / -32.0f);
  std::memset(blk, 0, 136);
  uint16_t high = 0;
  for (int s = 0; s < 8; ++s) {
    const int ls = (d != 0.0f ? std::clamp(nearest(scale[s] / d), -32, 31) : 0) + 32;
    blk[4 + s / 2] |= static_cast<std::byte>((ls & 0xF) << (4 * (s % 2)));
    high = static_cast<uint16_t>(high | (ls >> 4) << (2 * s));
    put_iq4_nibbles(x + 32 * s, d * static_cast<float>(ls - 32), blk + 8 + 16 * s);
  }
  put16(blk, f32_to_f16(d));
  put16(blk + 2, high);
}

}  // namespace

bool quantize_supports(DType t) {
  switch (t) {
    case DType::F32: case DType::F16: case DType::BF16: case DType::Q8_0: case DType::Q4_0: case DType::Q4_1:
    case DType::Q5_0: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K: case DType::Q3_K:
    case DType::Q2_K: case DType::IQ4_NL: case DType::IQ4_XS: return true;
    default: return false;
  }
}

void quantize_row(DType t, const float* x, int64_t n, std::byte* out) {
  if (t == DType::F32) return std::memcpy(out, x, static_cast<size_t>(n) * 4), void();
  const DTypeInfo& info = dtype_info(t);
  for (int64_t b = 0; b < n / info.block_elems; ++b) {
    const float* xb = x + b * info.block_elems;
    std::byte* blk = out + b * info.block_bytes;
    switch (t) {
      case DType::F16: put16(blk, f32_to_f16(*xb)); break;
      case DType::BF16: put16(blk, f32_to_bf16(*xb)); break;
      case DType::Q8_0: {
        // d = max|x| / 127, q = round(x / d): as ggml's quantize_row_q8_0_ref.
        float amax = 0;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        put16(blk, f32_to_f16(d));
        for (int i = 0; i < 32; ++i) blk[2 + i] = static_cast<std::byte>(static_cast<int8_t>(nearest(xb[i] * id)));
        break;
      }
      case DType::Q4_0: quantize_centred(xb, 4, blk); break;
      case DType::Q5_0: quantize_centred(xb, 5, blk); break;
      case DType::Q4_1: quantize_with_min(xb, 4, blk); break;
      case DType::Q5_1: quantize_with_min(xb, 5, blk); break;
      case DType::Q4_K: quantize_q45k(xb, false, blk); break;
      case DType::Q5_K: quantize_q45k(xb, true, blk); break;
      case DType::Q6_K: quantize_q6k(xb, blk); break;
      case DType::Q3_K: quantize_q3k(xb, blk); break;
      case DType::Q2_K: quantize_q2k(xb, blk); break;
      case DType::IQ4_NL: quantize_iq4nl(xb, blk); break;
      case DType::IQ4_XS: quantize_iq4xs(xb, blk); break;
      default: throw std::invalid_argument("quantize_row: unsupported dtype " + std::string(to_string(t)));
    }
  }
}

}  // namespace umi::cpu
