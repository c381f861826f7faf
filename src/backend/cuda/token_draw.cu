// Compiled with -fmad=false (CMakeLists.txt): draw_math.h's arithmetic must
// round as the host's does.
#include "backend/cuda/token_draw.h"

#include <string>

#include "backend/draw_math.h"
#include "core/error.h"

namespace umi::cuda {

namespace {

constexpr int kCutThreads = 1024, kPickThreads = 256, kPickSlice = 4096, kBins = 1024;
constexpr unsigned kAll = 0xFFFFFFFFu;

// What the cut kernel leaves for the pick: which of a row's candidates its
// min-p and top-p keep.
struct DrawCut {
  float top;         // the best value; -inf: no candidate
  float end_w;       // the nucleus's last token (end_w, end_id); -1: top-p off
  int32_t end_id;
  int32_t filtered;  // min-p or top-p is on
};

__device__ inline bool candidate(const float* row, int64_t i, float t, float& v) {
  const float x = row[i];
  if (!isfinite(x)) return false;
  v = x / t;  // IEEE division, as the host's
  return isfinite(v);
}

// Block-wide reductions (every thread gets the result); `shared` holds 32.
__device__ float block_max(float v, float* shared) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kAll, v, o));
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x / 32) ? shared[lane] : -INFINITY;
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kAll, v, o));
  return v;
}
__device__ unsigned long long block_sum(unsigned long long v, unsigned long long* shared) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kAll, v, o);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < static_cast<int>(blockDim.x / 32) ? shared[lane] : 0ull;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kAll, v, o);
  return v;
}

// A thread's share of a row, four loads in flight at a time (one SM reads
// the whole row: a load at a time would wait on each): f(i, value, valid)
// for every i of the thread, called by every lane of the warp together
// (valid false past n), so that f may use warp-wide operations.
template <class F>
__device__ void for_each_of_row(const float* p, int64_t n, F f) {
  constexpr int kInFlight = 4;
  const int64_t lane = threadIdx.x % 32;  // a warp goes on while its first lane has values
  for (int64_t base = threadIdx.x; base - lane < n; base += kInFlight * kCutThreads) {
    float v[kInFlight];
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) {
      const int64_t i = base + u * kCutThreads;
      v[u] = i < n ? p[i] : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < kInFlight; ++u) f(base + u * kCutThreads, v[u], base + u * kCutThreads < n);
  }
}

// count[bin] += 1 and mass[bin] += m for the lanes where `add`, one atomic
// per distinct bin of the warp: a flat row's weights fall in a few bins,
// and 32 lanes adding to one address would wait on each other.
__device__ void add_to_histogram(unsigned* count, unsigned long long* mass, unsigned bin, unsigned long long m, bool add) {
  const unsigned adding = __ballot_sync(kAll, add);
  if (!add) return;
  const unsigned peers = __match_any_sync(adding, bin);
  if (__all_sync(adding, __popc(peers) == 1)) {  // every bin its own (a spread row): no gathering
    atomicAdd(&count[bin], 1u);
    atomicAdd(&mass[bin], m);
    return;
  }
  unsigned long long sum = 0;
  for (unsigned rest = peers; rest != 0; rest &= rest - 1) sum += __shfl_sync(peers, m, __ffs(rest) - 1);
  if (threadIdx.x % 32 == static_cast<unsigned>(__ffs(peers) - 1)) {
    atomicAdd(&count[bin], static_cast<unsigned>(__popc(peers)));
    atomicAdd(&mass[bin], sum);
  }
}

// Warp 0, after a histogram pass: of the bins taken from the highest down,
// the one where the mass reaches `need`; out: that bin, the mass still
// needed from it, and how many tokens it holds.
__device__ void find_crossing(const unsigned* count, const unsigned long long* mass, unsigned long long need, unsigned* bin_out,
                              unsigned long long* need_out, unsigned* count_out) {
  const int lane = threadIdx.x;
  unsigned long long part = 0;
  for (int j = 0; j < 32; ++j) part += mass[kBins - 1 - lane * 32 - j];
  unsigned long long inclusive = part;
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned long long below = __shfl_up_sync(kAll, inclusive, o);
    if (lane >= o) inclusive += below;
  }
  // Some lane crosses: the tokens of this pass hold at least `need`.
  const int first = __ffs(__ballot_sync(kAll, inclusive >= need)) - 1;
  if (lane != first) return;
  unsigned long long held = inclusive - part;
  for (int j = 0; j < 32; ++j) {
    const unsigned b = kBins - 1 - lane * 32 - j;
    if (held + mass[b] >= need) {
      *bin_out = b, *need_out = need - held, *count_out = count[b];
      return;
    }
    held += mass[b];
  }
}

// The id of the c-th (from 1) token, in id order, whose weight has these
// bits: a block-wide ordered scan (only when the nucleus ends among tokens
// of equal weight and keeps some of them).
__device__ int32_t nth_id(const float* w_row, int64_t n, uint32_t bits, unsigned long long c, unsigned* warp_counts, int* found) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (threadIdx.x == 0) *found = -1;
  unsigned long long seen = 0;
  for (int64_t base = 0; base < n; base += kCutThreads) {
    const int64_t i = base + threadIdx.x;
    const bool hit = i < n && draw::float_bits(w_row[i]) == bits;
    const unsigned ballot = __ballot_sync(kAll, hit);
    __syncthreads();
    if (lane == 0) warp_counts[warp] = __popc(ballot);
    __syncthreads();
    unsigned long long before = seen, all = 0;
    for (int w = 0; w < kCutThreads / 32; ++w) {
      if (w < warp) before += warp_counts[w];
      all += warp_counts[w];
    }
    if (hit && before + __popc(ballot & ((1u << lane) - 1)) + 1 == c) *found = static_cast<int>(i);
    seen += all;
    __syncthreads();
    if (*found >= 0) break;
  }
  return *found;
}

// One block a row: the best value, and with top-p the nucleus's last token.
__global__ void __launch_bounds__(kCutThreads)
    draw_cut_kernel(const float* __restrict__ x, int64_t n, const DrawSettings* __restrict__ settings, DrawCut* __restrict__ cuts,
                    float* weights) {
  __shared__ float shared_f[32];
  __shared__ unsigned long long shared_u[32];
  __shared__ unsigned count[kBins], warp_counts[32], crossing_bin, crossing_count;
  __shared__ unsigned long long mass[kBins], crossing_need;
  __shared__ int found;
  const int64_t r = blockIdx.x;
  const DrawSettings s = settings[r];
  const float* row = x + r * n;
  DrawCut cut{-INFINITY, -1.0f, INT32_MAX, 0};
  if (!(s.min_p > 0.0f || s.top_p < 1.0f)) {
    if (threadIdx.x == 0) cuts[r] = cut;
    return;
  }
  cut.filtered = 1;
  float top = -INFINITY;
  for_each_of_row(row, n, [&](int64_t, float x, bool valid) {
    const float v = x / s.temperature;
    if (valid && isfinite(x) && isfinite(v)) top = fmaxf(top, v);
  });
  cut.top = top = block_max(top, shared_f);
  if (top == -INFINITY || !(s.top_p < 1.0f)) {
    if (threadIdx.x == 0) cuts[r] = cut;
    return;
  }
  // The weights, kept for the passes below, and their exact total.
  float* w_row = weights + r * n;
  unsigned long long total = 0;
  for_each_of_row(row, n, [&](int64_t i, float x, bool valid) {
    const float v = x / s.temperature;
    const float w = valid && isfinite(x) && isfinite(v) ? draw::exp(v - top) : 0.0f;
    if (valid) w_row[i] = w;
    total += draw::weight_mass(w);
  });
  total = block_sum(total, shared_u);  // its barriers also publish w_row to the block
  // Radix select over the weights' 30 bits (w <= 1), highest first: the
  // bins whose mass reaches what the nucleus still needs.
  unsigned long long need = draw::nucleus_target(total, s.top_p);
  uint32_t prefix = 0, mask = 0, ties = 0;
  for (int shift = 20; shift >= 0; shift -= 10) {
    for (int b = threadIdx.x; b < kBins; b += kCutThreads) count[b] = 0, mass[b] = 0;
    __syncthreads();
    for_each_of_row(w_row, n, [&](int64_t, float w, bool valid) {
      const uint32_t bits = draw::float_bits(w);
      const unsigned long long m = draw::weight_mass(w);
      // Massless tokens never end a nucleus.
      add_to_histogram(count, mass, (bits >> shift) & (kBins - 1), m, valid && m != 0 && (bits & mask) == prefix);
    });
    __syncthreads();
    if (threadIdx.x < 32) find_crossing(count, mass, need, &crossing_bin, &crossing_need, &crossing_count);
    __syncthreads();
    prefix |= crossing_bin << shift, mask |= (kBins - 1u) << shift;
    need = crossing_need, ties = crossing_count;
    __syncthreads();  // the next pass clears the bins
  }
  // The nucleus ends among the `ties` tokens of weight end_w (positive
  // mass), after c of them in id order.
  cut.end_w = draw::bits_float(prefix);
  const unsigned long long unit = draw::weight_mass(cut.end_w), c = (need + unit - 1) / unit;
  if (c < ties) cut.end_id = nth_id(w_row, n, prefix, c, warp_counts, &found);
  if (threadIdx.x == 0) cuts[r] = cut;
}

// A score and its id as one key whose integer order is the draw's: higher
// score, then lower id. -0 and +0 are equal scores.
__device__ inline unsigned long long score_key(float score, int64_t id) {
  const unsigned bits = __float_as_uint(score == 0.f ? 0.f : score), ordered = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  return (static_cast<unsigned long long>(ordered) << 32) | (0xFFFFFFFFu - static_cast<unsigned>(id));
}

// Block (slice, row): the best score of its kept candidates into best[row].
__global__ void __launch_bounds__(kPickThreads)
    draw_pick_kernel(const float* __restrict__ x, int64_t n, const DrawSettings* __restrict__ settings, const DrawCut* __restrict__ cuts,
                     unsigned long long* best) {
  __shared__ unsigned long long shared[kPickThreads / 32];
  const int64_t r = blockIdx.y, start = static_cast<int64_t>(blockIdx.x) * kPickSlice;
  const int64_t end = start + kPickSlice < n ? start + kPickSlice : n;
  const DrawSettings s = settings[r];
  const DrawCut cut = cuts[r];
  const float* row = x + r * n;
  unsigned long long mine = 0;
  for (int64_t i = start + threadIdx.x; i < end; i += kPickThreads) {
    float v;
    if (!candidate(row, i, s.temperature, v)) continue;
    if (cut.filtered) {
      const float w = draw::exp(v - cut.top);
      if (!(w >= s.min_p && (w > cut.end_w || (w == cut.end_w && i <= cut.end_id)))) continue;
    }
    const unsigned long long key = score_key(v + draw::gumbel(s.key_lo, s.key_hi, static_cast<uint32_t>(i)), i);
    mine = key > mine ? key : mine;
  }
  for (int o = 16; o > 0; o >>= 1) {
    const unsigned long long other = __shfl_xor_sync(kAll, mine, o);
    mine = other > mine ? other : mine;
  }
  if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = mine;
  __syncthreads();
  if (threadIdx.x != 0) return;
  for (int w = 1; w < kPickThreads / 32; ++w) mine = shared[w] > mine ? shared[w] : mine;
  if (mine != 0) atomicMax(best + r, mine);
}

size_t align256(size_t b) { return (b + 255) / 256 * 256; }

}  // namespace

size_t draw_scratch_bytes(int64_t rows, int64_t n) {
  return align256(static_cast<size_t>(rows) * sizeof(DrawCut)) + static_cast<size_t>(rows * n) * sizeof(float);
}

cudaError_t draw_rows(const float* x, int64_t rows, int64_t n, const DrawSettings* settings, unsigned long long* best, void* scratch,
                      size_t scratch_bytes, cudaStream_t stream) {
  if (!x || !settings || !best || rows <= 0 || rows >= 65536 || n <= 0 || n >= (int64_t{1} << 31))
    throw Error("cuda draw_rows: bad arguments (" + std::to_string(rows) + " rows of " + std::to_string(n) + ")");
  if (!scratch || scratch_bytes < draw_scratch_bytes(rows, n) || reinterpret_cast<uintptr_t>(scratch) % 8 != 0)
    throw Error("cuda draw_rows: scratch smaller than draw_scratch_bytes or misaligned");
  auto* cuts = static_cast<DrawCut*>(scratch);
  auto* weights = reinterpret_cast<float*>(static_cast<std::byte*>(scratch) + align256(static_cast<size_t>(rows) * sizeof(DrawCut)));
  if (cudaError_t e = cudaMemsetAsync(best, 0, static_cast<size_t>(rows) * sizeof(unsigned long long), stream); e != cudaSuccess) return e;
  draw_cut_kernel<<<static_cast<unsigned>(rows), kCutThreads, 0, stream>>>(x, n, settings, cuts, weights);
  const auto slices = static_cast<unsigned>((n + kPickSlice - 1) / kPickSlice);
  draw_pick_kernel<<<dim3(slices, static_cast<unsigned>(rows)), kPickThreads, 0, stream>>>(x, n, settings, cuts, best);
  return cudaGetLastError();
}

}  // namespace umi::cuda
