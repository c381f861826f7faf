// Times the device's whole-row draw (backend/cuda/token_draw.h): rows of
// 128,256 logits from N(0, s) (s 0.1 flat as a random-weight model's, 6
// peaked as a trained one's), with top-p and min-p off and on. Each line:
// microseconds a call on the GPU (cudaEvents around `reps` calls) and the
// rate the logits are read at (each row's 513 KB once; the cut kernel reads
// a filtered row more than once, the figure counts it once).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "backend/cuda/token_draw.h"

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 50;
  const int64_t n = 128256;
  struct Setting {
    const char* name;
    float top_p, min_p;
  };
  const Setting settings[] = {{"top_p 1", 1.0f, 0.0f}, {"top_p 0.95", 0.95f, 0.0f}, {"min_p 0.05", 1.0f, 0.05f}, {"top_p 0.95 min_p 0.05", 0.95f, 0.05f}};
  std::mt19937 rng(1);
  for (int64_t rows : {1, 8, 32})
    for (float s : {0.1f, 6.0f}) {
      std::vector<float> x(static_cast<size_t>(rows * n));
      std::normal_distribution<float> nd(0.0f, s);
      for (float& v : x) v = nd(rng);
      float* dx = nullptr;
      umi::cuda::DrawSettings* dset = nullptr;
      unsigned long long* best = nullptr;
      void* scratch = nullptr;
      const size_t scratch_bytes = umi::cuda::draw_scratch_bytes(rows, n);
      cudaMalloc(&dx, x.size() * sizeof(float));
      cudaMalloc(&dset, static_cast<size_t>(rows) * sizeof(umi::cuda::DrawSettings));
      cudaMalloc(&best, static_cast<size_t>(rows) * sizeof(unsigned long long));
      cudaMalloc(&scratch, scratch_bytes);
      cudaMemcpy(dx, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice);
      for (const Setting& setting : settings) {
        std::vector<umi::cuda::DrawSettings> hs(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r) hs[static_cast<size_t>(r)] = {1.0f, setting.top_p, setting.min_p, static_cast<uint32_t>(rng()), static_cast<uint32_t>(r)};
        cudaMemcpy(dset, hs.data(), hs.size() * sizeof(hs[0]), cudaMemcpyHostToDevice);
        cudaEvent_t a, b;
        cudaEventCreate(&a), cudaEventCreate(&b);
        umi::cuda::draw_rows(dx, rows, n, dset, best, scratch, scratch_bytes, nullptr);  // warm
        cudaEventRecord(a);
        for (int i = 0; i < reps; ++i) umi::cuda::draw_rows(dx, rows, n, dset, best, scratch, scratch_bytes, nullptr);
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        float ms = 0;
        cudaEventElapsedTime(&ms, a, b);
        const double us = 1000.0 * ms / reps;
        std::printf("{\"bench\": \"cuda_draw\", \"rows\": %lld, \"n\": %lld, \"sigma\": %.1f, \"setting\": \"%s\", \"us\": %.2f, \"GBps\": %.1f, \"error\": \"%s\"}\n",
                    static_cast<long long>(rows), static_cast<long long>(n), static_cast<double>(s), setting.name, us,
                    static_cast<double>(rows * n) * 4 / (us * 1e3), cudaGetErrorString(cudaGetLastError()));
        cudaEventDestroy(a), cudaEventDestroy(b);
      }
      cudaFree(dx), cudaFree(dset), cudaFree(best), cudaFree(scratch);
    }
}
