// Times decode attention on the device: one token of one sequence against
// `context` keys of the paged f16 KV cache, Llama-3-8B's head shape (32 q
// heads, 8 KV heads, head_dim 128, blocks of 16 tokens), for several split
// sizes. One JSON line per (context, split_keys):
//   umi_cuda_attention [reps]
// The 32 layers' calls are one CUDA graph, replayed `reps` times back to
// back between two events (the CPU launches the next replay while the GPU
// runs this one), so `us` is a call's time on the GPU the way a decode
// step's graph runs it, with 32 layers' KV (not one layer's, which would sit
// in L2). split_keys 0 is the default policy (ops.h); rel_diff: how far
// this split size's output is from split_keys 256's (the default before
// session 9), a check that the variants agree.
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

constexpr int kLayers = 32, kBlockTokens = 16;

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  const umi::cuda::HeadShape shape{32, 8, 128};
  const int64_t kv_dim = shape.n_kv_heads * shape.head_dim;
  const size_t layer_bytes = 2 * kBlockTokens * kv_dim * sizeof(__half);
  // 33000: a context just past a power of two (the graph's splits are laid out for 65536).
  const std::vector<int64_t> contexts = {16, 64, 144, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 33000};
  const std::vector<int64_t> splits = {256, 0, 32, 64, 128, 512};  // 0: the default policy
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
  void** d_ptrs;
  int64_t* d_pos;
  int32_t *d_start, *d_groups;
  float *q, *out, *partial;
  const size_t partial_floats = (16u << 20) / sizeof(float);  // as the backend's
  const size_t q_floats = shape.n_heads * shape.head_dim;
  check(cudaMalloc(&d_ptrs, max_blocks * sizeof(void*)), "ptrs");
  check(cudaMalloc(&d_pos, sizeof(int64_t)), "pos");
  check(cudaMalloc(&d_start, sizeof(int32_t)), "start");
  check(cudaMalloc(&d_groups, sizeof(int32_t)), "groups");
  check(cudaMalloc(&q, q_floats * sizeof(float)), "q");
  check(cudaMalloc(&out, kLayers * q_floats * sizeof(float)), "out");
  check(cudaMalloc(&partial, partial_floats * sizeof(float)), "partial");
  std::vector<float> hq(q_floats);
  for (size_t i = 0; i < q_floats; ++i) hq[i] = std::sin(0.37f * static_cast<float>(i)) * 2.f;
  check(cudaMemcpy(q, hq.data(), q_floats * sizeof(float), cudaMemcpyHostToDevice), "q copy");
  check(cudaMemcpy(d_ptrs, ptrs.data(), max_blocks * sizeof(void*), cudaMemcpyHostToDevice), "ptrs copy");
  const int32_t zero = 0, group = 1 << 24;  // token 0, one token
  check(cudaMemcpy(d_start, &zero, sizeof zero, cudaMemcpyHostToDevice), "start copy");
  check(cudaMemcpy(d_groups, &group, sizeof group, cudaMemcpyHostToDevice), "groups copy");
  umi::cuda::KvPass pass;
  pass.positions = d_pos;
  pass.table_start = d_start;
  pass.block_ptrs = d_ptrs;
  pass.groups = d_groups;
  pass.tokens = 1;
  pass.n_groups = 1;
  pass.block_tokens = kBlockTokens;
  pass.layer_bytes = layer_bytes;
  pass.kv_dtype = umi::DType::F16;
  cudaEvent_t e0, e1;
  check(cudaEventCreate(&e0), "event");
  check(cudaEventCreate(&e1), "event");
  for (int64_t context : contexts) {
    const int64_t position = context - 1;
    check(cudaMemcpy(d_pos, &position, sizeof position, cudaMemcpyHostToDevice), "pos copy");
    int64_t rounded = 32;  // the backend's graphs: positions rounded up to a power of two
    while (rounded <= position) rounded *= 2;
    std::vector<float> reference;
    for (int64_t split : splits) {
      cudaGraph_t graph;
      cudaGraphExec_t exec;
      check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "capture");
      for (int l = 0; l < kLayers; ++l)
        check(umi::cuda::attention(pass, shape, l, q, out + l * q_floats, nullptr, rounded - 1, {partial, partial_floats, split},
                                   stream),
              "attention");
      check(cudaStreamEndCapture(stream, &graph), "end capture");
      check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
      check(cudaGraphLaunch(exec, stream), "warm-up");
      check(cudaGraphLaunch(exec, stream), "warm-up");
      check(cudaEventRecord(e0, stream), "record");
      for (int r = 0; r < reps; ++r) check(cudaGraphLaunch(exec, stream), "launch");
      check(cudaEventRecord(e1, stream), "record");
      check(cudaEventSynchronize(e1), "sync");
      float ms = 0;
      check(cudaEventElapsedTime(&ms, e0, e1), "elapsed");
      std::vector<float> got(kLayers * q_floats);
      check(cudaMemcpy(got.data(), out, got.size() * sizeof(float), cudaMemcpyDeviceToHost), "out copy");
      double num = 0, den = 0;
      if (reference.empty()) reference = got;
      for (size_t i = 0; i < got.size(); ++i) {
        num += (got[i] - reference[i]) * (got[i] - reference[i]);
        den += reference[i] * reference[i];
      }
      std::printf("{\"bench\":\"cuda_attention\",\"context\":%lld,\"split_keys\":%lld,\"us\":%.2f,\"rel_diff\":%.2e}\n",
                  static_cast<long long>(context), static_cast<long long>(split),
                  1000.0 * ms / (reps * kLayers), std::sqrt(num / std::max(den, 1e-30)));
      cudaGraphExecDestroy(exec);
      cudaGraphDestroy(graph);
    }
  }
  return 0;
}
