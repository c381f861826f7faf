// CpuBackend::attention: flash-style attention over the paged KV cache; no
// [T, positions] score matrix exists anywhere. A pass's runs go one of two
// ways:
// - runs of several tokens (prefill chunks) by KV head: each KV block the
//   run can see is converted to f32 tiles once and serves every query head
//   of the group for every token of the run;
// - single-token runs (decode) by positions: each thread takes a range of
//   the run's blocks and every head of them through attn_keys (dot.h: the
//   cache's keys converted eight or sixteen at a time on the stack, scores,
//   softmax and values fused), requesting the next block's 32 KB (a 1B
//   model's K and V of 16 tokens) while it works on this one; with fewer
//   runs than threads the threads' partial softmaxes merge at the end. By
//   head, as prefill does, a decode step converted each block into scratch
//   and took a horizontal sum per score: 1B Q4_0 at 1,500 positions,
//   alternating token by token in one process, 36.9 -> 42.6 and 50.7 ->
//   58.0 tok/s (session 16; without any attention 73.5).
// Both keep the online softmax: a running max and denominator per query
// row, the output rows accumulating in place.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/dot.h"
#include "core/error.h"
#include "model/memory_plan.h"

namespace umi::cpu {

namespace {
// A head's K and V rows of the next block, requested while this block is
// worked on: each row is one head's slice (head_bytes, e.g. 128) of a
// token's row of every head (row, e.g. 1 KB), a stride the hardware
// prefetchers do not follow, and every read of them waited on memory: the
// conversion of K and V took ~4% of a decode step at ~200 positions. With
// the request, 1B Q4_0 decode alternating token by token in one process:
// 400 positions 48.9 -> 54.5 and 45.2 -> 49.3 tok/s, 1,500 positions 32.3
// -> 38.6 and 32.6 -> 41.7 (session 14). One row's pair at a time, beside
// the conversion of the same row of this block, not a block's 64 lines at
// once (more than the L1's miss buffers hold): 1,500 positions 40.0 ->
// 42.3, 40.6 -> 41.8, 49.3 -> 50.9, 49.1 -> 50.6 (session 15).
void prefetch_head_row(const std::byte* k_row, size_t v_offset, size_t head_bytes) {
  // Every line a slice touches, also where it does not start on one (Q8_0 heads of 68 bytes).
  auto slice = [head_bytes](const std::byte* p) {
    const uintptr_t first = reinterpret_cast<uintptr_t>(p);
    for (uintptr_t line = first & ~uintptr_t{63}; line < first + head_bytes; line += 64)
      __builtin_prefetch(reinterpret_cast<const void*>(line));
  };
  slice(k_row), slice(k_row + v_offset);
}

// Every line of [p, p + bytes) into the cache.
void prefetch_lines(const std::byte* p, size_t bytes) {
  for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off);
}

// One step of the online softmax for a query row: s (n scores) become their
// numerators against the new running max; returns the factor by which the
// row's output so far must be scaled.
float softmax_step(float* s, int64_t n, float& row_max, float& denom) {
  float block_max = s[0];
  for (int64_t i = 1; i < n; ++i) block_max = std::max(block_max, s[i]);
  const float m_new = std::max(row_max, block_max), correction = std::exp(row_max - m_new);
  denom = denom * correction + exp_sum(s, n, m_new);
  row_max = m_new;
  return correction;
}

void scale_row(float* o, int64_t n, float factor) {
  if (factor != 1.0f)
    for (int64_t i = 0; i < n; ++i) o[i] *= factor;
}
}  // namespace

CpuBackend::AttentionShape CpuBackend::attention_shape(int64_t layer) const {
  const ModelConfig& c = setup_.config;
  const KvLayout& layout = kv_pool_.layout();
  AttentionShape s;
  s.H = c.n_heads, s.Hkv = c.n_kv_heads, s.hd = c.head_dim, s.group = s.H / s.Hkv, s.B = layout.block_tokens;
  s.dtype = layout.dtype;
  s.head_bytes = dtype_bytes(s.dtype, static_cast<uint64_t>(s.hd)).value_or(0);
  s.row = layout.row_bytes();
  s.layer_offset = static_cast<size_t>(layer) * layout.layer_bytes();
  s.scale = 1.0f / std::sqrt(static_cast<float>(s.hd));
  const AttentionScratch scratch = attention_scratch(c, setup_.max_tokens, threads_.size(), s.B);
  s.per_thread = scratch.per_thread;
  s.partials = scratch.partials;
  s.partial_floats = static_cast<size_t>(s.H * (s.hd + 2));
  return s;
}

void CpuBackend::attention(int64_t l, const float* q, float* out) {
  const AttentionShape s = attention_shape(l);
  // attn_keys holds a tile of keys on the stack: heads wider than it go by head.
  const bool by_positions = s.hd <= kAttnKeysMaxHeadDim;
  several_token_runs_.clear();
  single_token_runs_.clear();
  for (size_t r = 0; r < pass_.runs.size(); ++r)
    (pass_.runs[r].end - pass_.runs[r].first == 1 && by_positions ? single_token_runs_ : several_token_runs_).push_back(r);
  if (!several_token_runs_.empty()) attend_by_heads(s, q, out);
  if (!single_token_runs_.empty()) attend_by_positions(s, q, out);
}

// Work items are (run, KV head) over the runs of several tokens.
void CpuBackend::attend_by_heads(const AttentionShape& s, const float* q, float* out) {
  const int64_t H = s.H, Hkv = s.Hkv, hd = s.hd, group = s.group, B = s.B;
  const size_t row = s.row;
  const int64_t max_tokens = setup_.max_tokens;
  std::atomic<int> next_slot{0};
  threads_.parallel_for(static_cast<int64_t>(several_token_runs_.size()) * Hkv, 1, [&](int64_t begin, int64_t end) {
    float* kf = attn_scratch_.as<float>() + static_cast<size_t>(next_slot++) * s.per_thread;  // [B, hd]
    float* vf = kf + B * hd;              // [B, hd]
    float* scores = vf + B * hd;          // [group, B]
    float* row_max = scores + group * B;  // [run tokens * group]
    float* denom = row_max + group * max_tokens;
    for (int64_t item = begin; item < end; ++item) {
      const TokenRun& run = pass_.runs[several_token_runs_[static_cast<size_t>(item / Hkv)]];
      const int64_t t0 = run.first, t1 = run.end, kvh = item % Hkv;
      const int64_t first_pos = run.first_position, last = first_pos + (t1 - t0) - 1;
      auto q_rows = [&](int64_t t) { return q + (t * H + kvh * group) * hd; };  // [group, hd]
      auto o_rows = [&](int64_t t) { return out + (t * H + kvh * group) * hd; };
      for (int64_t t = t0; t < t1; ++t) std::fill(o_rows(t), o_rows(t) + group * hd, 0.0f);
      std::fill(row_max, row_max + (t1 - t0) * group, -std::numeric_limits<float>::infinity());
      std::fill(denom, denom + (t1 - t0) * group, 0.0f);
      for (int64_t p0 = 0; p0 <= last; p0 += B) {
        const std::byte* k_rows = kv_pool_.data(run.blocks[static_cast<size_t>(p0 / B)]) + s.layer_offset +
                                  static_cast<size_t>(kvh) * s.head_bytes;  // K of position p0 + i at i * row
        const std::byte* v_rows = k_rows + static_cast<size_t>(B) * row;
        const int64_t n = std::min(B, last + 1 - p0);
        const int64_t next_n = std::max<int64_t>(0, std::min(B, last + 1 - p0 - B));  // positions of the next block
        const std::byte* next_k = next_n > 0 ? kv_pool_.data(run.blocks[static_cast<size_t>(p0 / B + 1)]) + s.layer_offset +
                                                   static_cast<size_t>(kvh) * s.head_bytes
                                             : nullptr;
        for (int64_t i = 0; i < n; ++i) {
          if (i < next_n) prefetch_head_row(next_k + static_cast<size_t>(i) * row, static_cast<size_t>(B) * row, s.head_bytes);
          kv_to_f32(k_rows + static_cast<size_t>(i) * row, s.dtype, hd, kf + i * hd);
          kv_to_f32(v_rows + static_cast<size_t>(i) * row, s.dtype, hd, vf + i * hd);
        }
        // Causal: token t sees positions up to its own; the run's positions are consecutive.
        for (int64_t t = std::max(t0, t0 + p0 - first_pos); t < t1; ++t) {
          const int64_t seen = std::min(n, first_pos + (t - t0) - p0 + 1);  // keys of this block token t sees
          attn_scores(q_rows(t), hd, group, kf, seen, hd, s.scale, scores);  // [group, seen]
          for (int64_t g = 0; g < group; ++g) {
            const size_t r = static_cast<size_t>((t - t0) * group + g);
            scale_row(o_rows(t) + g * hd, hd, softmax_step(scores + g * seen, seen, row_max[r], denom[r]));
          }
          attn_accumulate(scores, group, vf, seen, hd, o_rows(t), hd);
        }
      }
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t g = 0; g < group; ++g)
          scale_row(o_rows(t) + g * hd, hd, 1.0f / denom[static_cast<size_t>((t - t0) * group + g)]);
    }
  });
}

// Work items are (single-token run, range of its blocks), every head of
// them; with fewer runs than threads each run is split into parts whose
// partial outputs (unnormalized, with their max and denominator per query
// head) merge after the job.
void CpuBackend::attend_by_positions(const AttentionShape& s, const float* q, float* out) {
  const int64_t H = s.H, Hkv = s.Hkv, hd = s.hd, group = s.group, B = s.B;
  const size_t row = s.row;
  const int64_t runs = static_cast<int64_t>(single_token_runs_.size()), threads = threads_.size();
  const int64_t parts_wanted = runs >= threads ? 1 : (threads + runs - 1) / runs;
  parts_.clear();
  int32_t partials = 0;
  for (size_t r : single_token_runs_) {
    const int64_t blocks = pass_.runs[r].first_position / B + 1;
    const int64_t parts = std::min(parts_wanted, blocks);
    for (int64_t p = 0; p < parts; ++p)
      parts_.push_back({r, blocks * p / parts, blocks * (p + 1) / parts, parts > 1 ? partials++ : -1});
  }
  const size_t partial_floats = s.partial_floats;
  if (static_cast<uint64_t>(partials) * partial_floats > s.partials) throw Error("attention: partial outputs exceed their scratch");
  float* partial_area = attn_scratch_.as<float>() + s.per_thread * static_cast<size_t>(threads);
  std::atomic<int> next_slot{0};
  threads_.parallel_for(static_cast<int64_t>(parts_.size()), 1, [&](int64_t begin, int64_t end) {
    float* own_max = attn_scratch_.as<float>() + static_cast<size_t>(next_slot++) * s.per_thread;  // [H], then [H] denominators
    for (int64_t item = begin; item < end; ++item) {
      const Part& part = parts_[static_cast<size_t>(item)];
      const TokenRun& run = pass_.runs[part.run];
      const int64_t t = run.first, last = run.first_position;
      float* o = part.partial < 0 ? out + t * H * hd : partial_area + static_cast<size_t>(part.partial) * partial_floats;  // [H, hd]
      float* row_max = part.partial < 0 ? own_max : o + H * hd;  // [H]
      float* denom = row_max + H;                                // [H]
      std::fill(o, o + H * hd, 0.0f);
      std::fill(row_max, row_max + H, -std::numeric_limits<float>::infinity());
      std::fill(denom, denom + H, 0.0f);
      for (int64_t b = part.first_block; b < part.end_block; ++b) {
        const std::byte* k_rows = kv_pool_.data(run.blocks[static_cast<size_t>(b)]) + s.layer_offset;  // K of position b * B + i at i * row
        const std::byte* v_rows = k_rows + static_cast<size_t>(B) * row;
        // The next block's K and V (32 KB for a 1B model), an eighth before
        // each head's keys here: each block is only a few pages, and the
        // prefetchers left alone paid a memory latency at each.
        const std::byte* next = b + 1 < part.end_block ? kv_pool_.data(run.blocks[static_cast<size_t>(b + 1)]) + s.layer_offset : nullptr;
        const size_t region = 2 * static_cast<size_t>(B) * row, slice = (region / static_cast<size_t>(Hkv) + 63) / 64 * 64;
        const int64_t n = std::min(B, last + 1 - b * B);
        for (int64_t kvh = 0; kvh < Hkv; ++kvh) {
          const size_t from = std::min(region, static_cast<size_t>(kvh) * slice), to = std::min(region, from + slice);
          if (next) prefetch_lines(next + from, to - from);
          const int64_t h0 = kvh * group;  // the group's first query head
          const size_t head = static_cast<size_t>(kvh) * s.head_bytes;
          attn_keys(q + (t * H + h0) * hd, group, k_rows + head, v_rows + head, row, s.dtype, n, hd, s.scale, row_max + h0,
                    denom + h0, o + h0 * hd);
        }
      }
      if (part.partial < 0)
        for (int64_t h = 0; h < H; ++h) scale_row(o + h * hd, hd, 1.0f / denom[h]);
    }
  });
  merge_parts(s, partial_area, out);
}

// Each split run's parts (consecutive in parts_) into its output row:
// rescaled to the largest of their maxima, summed, divided by the summed
// denominators.
void CpuBackend::merge_parts(const AttentionShape& s, const float* partial_area, float* out) const {
  const int64_t H = s.H, hd = s.hd;
  const size_t partial_floats = s.partial_floats;
  auto part_of = [&](size_t p) { return partial_area + static_cast<size_t>(parts_[p].partial) * partial_floats; };
  for (size_t i = 0; i < parts_.size();) {
    size_t j = i + 1;
    while (j < parts_.size() && parts_[j].run == parts_[i].run) ++j;
    if (parts_[i].partial >= 0) {
      float* o = out + pass_.runs[parts_[i].run].first * H * hd;
      for (int64_t h = 0; h < H; ++h) {
        float m = -std::numeric_limits<float>::infinity(), denom = 0;
        for (size_t p = i; p < j; ++p) m = std::max(m, part_of(p)[H * hd + h]);
        std::fill(o + h * hd, o + (h + 1) * hd, 0.0f);
        for (size_t p = i; p < j; ++p) {
          const float* part = part_of(p);
          const float w = std::exp(part[H * hd + h] - m);
          denom += part[H * hd + H + h] * w;
          for (int64_t d = 0; d < hd; ++d) o[h * hd + d] += part[h * hd + d] * w;
        }
        scale_row(o + h * hd, hd, 1.0f / denom);
      }
    }
    i = j;
  }
}

}  // namespace umi::cpu
