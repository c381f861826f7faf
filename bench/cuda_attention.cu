// Times attention on the device against the paged f16 KV cache, Llama-3-8B's
// head shape (32 q heads, 8 KV heads, head_dim 128, blocks of 16 tokens):
//   umi_cuda_attention [reps]
// Decode: one token of one sequence against `context` keys, for several
// split sizes; one JSON line per (context, split_keys). Prefill: a chunk of
// 512 tokens of one sequence at positions [start, start + 512) (the
// tensor-core kernel, attention_mma.h); one JSON line per start, with the
// kernel's rate in TFLOP/s (2 * 2 * head_dim flops per (token, head, key
// seen)).
// A pass's 32 layers' calls are one CUDA graph, replayed `reps` times back
// to back between two events (the CPU launches the next replay while the GPU
// runs this one), so `us` is a call's time on the GPU the way a step's graph
// runs it, with 32 layers' KV (not one layer's, which would sit in L2).
// split_keys 0 is the default policy (ops.h); rel_diff: how far this split
// size's output is from split_keys 256's (the default before session 9), a
// check that the variants agree.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "backend/cuda/ops.h"

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

// Random values in [-1, 1) from a hash of the index (the cache is GBs: filled on the device).
__global__ void fill_half(__half* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed ^ static_cast<uint32_t>(i >> 32) * 40503u;
    h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
    p[i] = __float2half(static_cast<float>(h >> 8) / 8388608.f - 1.f);
  }
}

constexpr int kLayers = 32, kBlockTokens = 16, kPrefillTokens = 512;

// Milliseconds a replay of `call(layer)` for the 32 layers takes, as one graph.
template <typename Call>
float time_layers(cudaStream_t stream, int reps, Call call) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "capture");
  for (int l = 0; l < kLayers; ++l) check(call(l), "attention");
  check(cudaStreamEndCapture(stream, &graph), "end capture");
  check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  check(cudaGraphLaunch(exec, stream), "warm-up");
  check(cudaGraphLaunch(exec, stream), "warm-up");
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "event");
  check(cudaEventCreate(&e1), "event");
  check(cudaEventRecord(e0, stream), "record");
  for (int r = 0; r < reps; ++r) check(cudaGraphLaunch(exec, stream), "launch");
  check(cudaEventRecord(e1, stream), "record");
  check(cudaEventSynchronize(e1), "sync");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return ms / reps;
}

template <typename T>
T* device_copy(const std::vector<T>& v) {
  T* p = nullptr;
  check(cudaMalloc(&p, v.size() * sizeof(T)), "alloc");
  check(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), "copy");
  return p;
}

std::vector<float> device_get(const float* p, size_t n) {
  std::vector<float> v(n);
  check(cudaMemcpy(v.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost), "out copy");
  return v;
}

double rel_diff(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    num += (got[i] - want[i]) * double(got[i] - want[i]);
    den += double(want[i]) * want[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// A pass of `positions` (one sequence, block table d_ptrs) in the backend's groups.
struct Pass {
  umi::cuda::KvPass kv;
  int64_t *positions = nullptr;
  int32_t *starts = nullptr, *groups = nullptr;
  Pass(const std::vector<int64_t>& pos, int64_t per_group, void** d_ptrs, size_t layer_bytes) {
    std::vector<int32_t> g;
    const int64_t n = static_cast<int64_t>(pos.size());
    for (int64_t t = 0; t < n; t += per_group) g.push_back(static_cast<int32_t>(t | (std::min(per_group, n - t) << 24)));
    positions = device_copy(pos);
    starts = device_copy(std::vector<int32_t>(pos.size(), 0));
    groups = device_copy(g);
    kv.positions = positions;
    kv.table_start = starts;
    kv.block_ptrs = d_ptrs;
    kv.groups = groups;
    kv.tokens = n;
    kv.n_groups = static_cast<int64_t>(g.size());
    kv.block_tokens = kBlockTokens;
    kv.layer_bytes = layer_bytes;
    kv.kv_dtype = umi::DType::F16;
  }
  ~Pass() {
    cudaFree(positions);
    cudaFree(starts);
    cudaFree(groups);
  }
};

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  const umi::cuda::HeadShape shape{32, 8, 128};
  const int64_t kv_dim = shape.n_kv_heads * shape.head_dim;
  const size_t layer_bytes = 2 * kBlockTokens * kv_dim * sizeof(__half);
  // 33000: a context just past a power of two (the graph's splits are laid out for 65536).
  const std::vector<int64_t> contexts = {16, 64, 144, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 33000};
  const std::vector<int64_t> splits = {256, 0, 32, 64, 128, 512};  // 0: the default policy
  const std::vector<int64_t> prefill_starts = {0, 1536, 7680, 32256};
  cudaStream_t stream;
  check(cudaStreamCreate(&stream), "stream");
  // One sequence's blocks for the longest context, every layer in each block.
  const int64_t max_blocks = (contexts.back() + kBlockTokens - 1) / kBlockTokens;
  const size_t block_bytes = kLayers * layer_bytes;
  __half* kv = nullptr;
  check(cudaMalloc(&kv, block_bytes * max_blocks), "kv");
  fill_half<<<1024, 256, 0, stream>>>(kv, block_bytes * max_blocks / sizeof(__half), 7u);
  std::vector<void*> ptrs(max_blocks);
  for (int64_t b = 0; b < max_blocks; ++b)  // every other block first: a table is not one contiguous run
    ptrs[b] = reinterpret_cast<std::byte*>(kv) + block_bytes * ((b * 2 + b * 2 / max_blocks) % max_blocks);
  void** d_ptrs = device_copy(ptrs);
  const size_t partial_floats = (16u << 20) / sizeof(float);  // as the backend's
  const size_t q_floats = shape.n_heads * shape.head_dim;
  std::vector<float> hq(q_floats * kPrefillTokens);
  for (size_t i = 0; i < hq.size(); ++i) hq[i] = std::sin(0.37f * static_cast<float>(i)) * 2.f;
  float* q = device_copy(hq);
  float *out = nullptr, *partial = nullptr;
  check(cudaMalloc(&out, kLayers * q_floats * kPrefillTokens * sizeof(float)), "out");
  check(cudaMalloc(&partial, partial_floats * sizeof(float)), "partial");
  for (int64_t context : contexts) {
    const int64_t position = context - 1;
    Pass pass({position}, 1, d_ptrs, layer_bytes);
    int64_t rounded = 32;  // the backend's graphs: positions rounded up to a power of two
    while (rounded <= position) rounded *= 2;
    std::vector<float> reference;
    for (int64_t split : splits) {
      const float ms = time_layers(stream, reps, [&](int l) {
        return umi::cuda::attention(pass.kv, shape, l, q, out + l * q_floats, nullptr, rounded - 1, {partial, partial_floats, split},
                                    stream);
      });
      const std::vector<float> got = device_get(out, kLayers * q_floats);
      if (reference.empty()) reference = got;
      std::printf("{\"bench\":\"cuda_attention\",\"context\":%lld,\"split_keys\":%lld,\"us\":%.2f,\"rel_diff\":%.2e}\n",
                  static_cast<long long>(context), static_cast<long long>(split), 1000.0 * ms / kLayers, rel_diff(got, reference));
    }
  }
  const int64_t per_group = umi::cuda::attention_tokens_per_group(shape, umi::DType::F16);
  const size_t chunk_floats = q_floats * kPrefillTokens;
  for (int64_t start : prefill_starts) {
    std::vector<int64_t> pos(kPrefillTokens);
    double keys_seen = 0;
    for (int64_t t = 0; t < kPrefillTokens; ++t) keys_seen += static_cast<double>(pos[t] = start + t) + 1;
    Pass pass(pos, per_group, d_ptrs, layer_bytes);
    const float ms = time_layers(stream, reps, [&](int l) {
      return umi::cuda::attention(pass.kv, shape, l, q, out + l * chunk_floats, nullptr, pos.back(), {partial, partial_floats, 0},
                                  stream);
    });
    const double us = 1000.0 * ms / kLayers, flops = 4.0 * shape.head_dim * shape.n_heads * keys_seen;
    std::printf("{\"bench\":\"cuda_attention_prefill\",\"tokens\":%d,\"start\":%lld,\"tokens_per_group\":%lld,\"us\":%.2f,"
                "\"tflops\":%.1f}\n",
                kPrefillTokens, static_cast<long long>(start), static_cast<long long>(per_group), us, flops / (us * 1e6));
  }
  return 0;
}
