// Checks and times the CUDA few-token matrix products on the device, one
// JSON line per (dtype, shape, tokens):
//   umi_cuda_matvec [reps]
// Correctness: random weights quantized by the CPU quantizer, random x; the
// reference is the CPU dequantizer's rows dotted in double with what the
// kernel multiplies (f32 x for float weights; for Q8_0/Q4_0 the CPU's own q8
// quantization of x, which the GPU's must equal bit for bit: q8_mismatch).
// rel_err = |y - ref| / |ref| over the whole output, which is poisoned with
// NaN before each checked run (an unwritten row fails); q8_vs_f32 is how
// far the q8 product is from the f32-activation one (the quantization
// itself, for information). Speed: median of `reps` event-timed runs,
// rotating over enough weight copies that they do not fit in L2; GB/s
// counts the weight bytes read.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/dot.h"
#include "backend/cpu/quantize.h"
#include "backend/cuda/quant_layout.h"
#include "backend/cuda/quant_matvec.h"

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

struct Shape {
  int64_t rows, cols;
};

// Over every `stride`-th row (the rows the reference computed) of y [tokens, rows].
double rel_error(const std::vector<float>& y, const std::vector<double>& ref, int64_t rows, int64_t stride) {
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    if (static_cast<int64_t>(i) % rows % stride != 0) continue;
    if (!std::isfinite(y[i])) return INFINITY;
    num += (y[i] - ref[i]) * (y[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

int run(umi::DType t, Shape s, int64_t tokens, int reps, std::mt19937& rng,
        umi::cuda::MatvecKernel kernel = umi::cuda::MatvecKernel::automatic) {
  const bool q8 = umi::cuda::matvec_q8_supports(t);
  const size_t row_bytes = umi::dtype_bytes(t, static_cast<uint64_t>(s.cols)).value();
  const size_t bytes = row_bytes * static_cast<size_t>(s.rows);
  const size_t n = static_cast<size_t>(tokens * s.cols);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<std::byte> w(bytes);
  std::vector<float> row(static_cast<size_t>(s.cols)), x(n);
  for (int64_t r = 0; r < s.rows; ++r) {
    for (float& v : row) v = nd(rng);
    umi::cpu::quantize_row(t, row.data(), s.cols, w.data() + static_cast<size_t>(r) * row_bytes);
  }
  for (float& v : x) v = nd(rng);
  // What the kernel multiplies: x itself, or its q8 blocks as the CPU makes them.
  std::vector<umi::cpu::Q8Block> xb(n / 32);
  std::vector<float> xk = x;
  if (q8) {
    umi::cpu::quantize_activations(x.data(), static_cast<int64_t>(n), xb.data());
    for (size_t i = 0; i < n; ++i) xk[i] = xb[i / 32].d * xb[i / 32].q[i % 32];
  }
  std::vector<double> ref(static_cast<size_t>(s.rows * tokens)), ref_f32(ref.size());
  // A sample of the rows when the double reference would take long (past ~2e8 multiply-adds).
  const int64_t stride = std::max<int64_t>(1, s.rows * s.cols * tokens / 200000000);
  for (int64_t r = 0; r < s.rows; r += stride) {
    umi::cpu::dequantize(t, w.data() + static_cast<size_t>(r) * row_bytes, row.data(), s.cols);
    for (int64_t tk = 0; tk < tokens; ++tk) {
      double acc = 0, acc32 = 0;
      for (int64_t c = 0; c < s.cols; ++c) {
        acc += static_cast<double>(row[static_cast<size_t>(c)]) * xk[static_cast<size_t>(tk * s.cols + c)];
        acc32 += static_cast<double>(row[static_cast<size_t>(c)]) * x[static_cast<size_t>(tk * s.cols + c)];
      }
      ref[static_cast<size_t>(tk * s.rows + r)] = acc;
      ref_f32[static_cast<size_t>(tk * s.rows + r)] = acc32;
    }
  }
  // Copies enough to rotate past the L2 (50 MB on the H100): 256 MB in all.
  const int copies = static_cast<int>(std::max<size_t>(1, (256u << 20) / bytes + 1));
  std::vector<void*> dw(static_cast<size_t>(copies));
  void* file_blocks = nullptr;
  check(cudaMalloc(&file_blocks, bytes), "cudaMalloc blocks");
  check(cudaMemcpy(file_blocks, w.data(), bytes, cudaMemcpyHostToDevice), "copy w");
  for (void*& p : dw) {
    check(cudaMalloc(&p, bytes), "cudaMalloc w");
    if (q8) {
      const int64_t blocks = static_cast<int64_t>(bytes / umi::dtype_info(t).block_bytes);
      check(umi::cuda::split_blocks(t, file_blocks, 0, blocks, blocks, p, nullptr), "split");
    } else {
      check(cudaMemcpy(p, file_blocks, bytes, cudaMemcpyDeviceToDevice), "copy w");
    }
  }
  cudaFree(file_blocks);
  float *dx = nullptr, *dy = nullptr;
  umi::cuda::Q8Rows xq;
  check(cudaMalloc(&dx, n * sizeof(float)), "cudaMalloc x");
  check(cudaMalloc(&xq.q, n), "cudaMalloc xq");
  check(cudaMalloc(&xq.ds, n / 32 * sizeof(float2)), "cudaMalloc xds");
  xq.n = static_cast<int64_t>(n);
  check(cudaMalloc(&xq.tiles, static_cast<size_t>(umi::cuda::q8_tiles_bytes(tokens, s.cols))), "cudaMalloc tiles");
  check(cudaMalloc(&dy, ref.size() * sizeof(float)), "cudaMalloc y");
  check(cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice), "copy x");
  check(cudaMemset(dy, 0xFF, ref.size() * sizeof(float)), "poison y");  // NaN
  int64_t mismatch = 0;
  auto launch = [&](const void* weights) {
    const umi::cuda::QuantMatrix m{t, weights, s.rows, s.cols};
    if (!q8) return umi::cuda::matvec(m, dx, dy, nullptr);
    umi::cuda::MatvecTargets one;
    one.m[0] = {weights, s.rows, dy};
    one.count = 1;
    return umi::cuda::matvec_q8(t, s.cols, one, xq, tokens, umi::cuda::MatvecOutput::store, nullptr, kernel);
  };
  if (q8) {
    check(umi::cuda::quantize_q8(dx, xq, nullptr), "quantize");
    std::vector<int8_t> q(n);
    std::vector<float2> ds(n / 32);
    check(cudaMemcpy(q.data(), xq.q, n, cudaMemcpyDeviceToHost), "copy q");
    check(cudaMemcpy(ds.data(), xq.ds, ds.size() * sizeof(float2), cudaMemcpyDeviceToHost), "copy ds");
    for (size_t b = 0; b < n / 32; ++b) {
      mismatch += ds[b].x != xb[b].d || ds[b].y != xb[b].qsum();
      for (int i = 0; i < 32; ++i) mismatch += q[b * 32 + i] != xb[b].q[i];
    }
  }
  check(launch(dw[0]), "launch");
  check(cudaDeviceSynchronize(), "run");
  std::vector<float> y(ref.size());
  check(cudaMemcpy(y.data(), dy, y.size() * sizeof(float), cudaMemcpyDeviceToHost), "copy y");
  const double rel = rel_error(y, ref, s.rows, stride), rel_f32 = rel_error(y, ref_f32, s.rows, stride);
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  std::vector<float> ms;
  for (int i = 0; i < reps + 5; ++i) {
    check(cudaEventRecord(a), "record");
    check(launch(dw[static_cast<size_t>(i % copies)]), "launch");
    check(cudaEventRecord(b), "record");
    check(cudaEventSynchronize(b), "sync");
    float t_ms = 0;
    check(cudaEventElapsedTime(&t_ms, a, b), "elapsed");
    if (i >= 5) ms.push_back(t_ms);  // the first runs warm up
  }
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2];
  const bool mma = kernel == umi::cuda::MatvecKernel::mma ||
                   (kernel == umi::cuda::MatvecKernel::automatic && tokens >= umi::cuda::kMmaTokens);  // xq.tiles is set
  std::printf("{\"kernel\":\"%s\",\"dtype\":\"%s\",\"rows\":%lld,\"cols\":%lld,\"tokens\":%lld,\"copies\":%d,\"rel_err\":%.3g,"
              "\"q8_vs_f32\":%.3g,\"q8_mismatch\":%lld,\"median_us\":%.2f,\"weight_gb_s\":%.1f}\n",
              q8 ? (mma ? "cuda_matvec_q8_mma" : "cuda_matvec_q8_dp4a") : "cuda_matvec", std::string(umi::to_string(t)).c_str(), static_cast<long long>(s.rows),
              static_cast<long long>(s.cols), static_cast<long long>(tokens), copies, rel, q8 ? rel_f32 : 0.0,
              static_cast<long long>(mismatch), med * 1e3, static_cast<double>(bytes) / (med * 1e-3) / 1e9);
  std::fflush(stdout);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  for (void* p : dw) cudaFree(p);
  cudaFree(dx);
  cudaFree(dy);
  cudaFree(xq.q);
  cudaFree(xq.ds);
  cudaFree(xq.tiles);
  // f32 sums of exact products (per block, then across blocks): far below 1e-5.
  return rel < 1e-5 && mismatch == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 50;
  std::mt19937 rng(1234);
  int failures = 0;
  // Llama-3-8B's matrices: q/o (4096 x 4096), k/v (1024 x 4096), gate/up (14336 x 4096), down (4096 x 14336),
  // output (128256 x 4096); plus odd sizes (rows not a multiple of 4, few blocks).
  const Shape shapes[] = {{4096, 4096}, {1024, 4096}, {14336, 4096}, {4096, 14336}, {128256, 4096}, {7, 64}, {1001, 96}};
  for (umi::DType t : {umi::DType::Q8_0, umi::DType::Q4_0, umi::DType::BF16, umi::DType::F16})
    for (Shape s : shapes) failures += run(t, s, 1, reps, rng);
  // Small batches (several decode streams) on both integer kernels: each weight load serves every token.
  using umi::cuda::MatvecKernel;
  for (umi::DType t : {umi::DType::Q8_0, umi::DType::Q4_0})
    for (Shape s : {Shape{14336, 4096}, Shape{4096, 4096}})
      for (int64_t tokens : {2, 4, 8, 16, 31, 48, 64})
        for (MatvecKernel k : {MatvecKernel::dp4a, MatvecKernel::mma}) failures += run(t, s, tokens, reps, rng, k);
  failures += run(umi::DType::Q4_0, {1001, 96}, 5, reps, rng, MatvecKernel::dp4a);
  failures += run(umi::DType::Q4_0, {1001, 96}, 5, reps, rng, MatvecKernel::mma);
  failures += run(umi::DType::Q8_0, {1001, 96}, 70, reps, rng, MatvecKernel::mma);
  // Bad arguments are refused, not launched.
  int refused = 0;
  auto refuses = [&](auto&& f) {
    try {
      f();
    } catch (const std::exception&) {
      ++refused;
    }
  };
  float* fake = reinterpret_cast<float*>(256);
  umi::cuda::Q8Rows fq{reinterpret_cast<int8_t*>(256), reinterpret_cast<float2*>(256), 256};
  refuses([&] { umi::cuda::matvec({umi::DType::Q4_K, fake, 8, 256}, fake, fake, nullptr); });
  refuses([&] { umi::cuda::matvec({umi::DType::Q8_0, fake, 8, 256}, fake, fake, nullptr); });  // needs q8 activations
  refuses([&] { umi::cuda::matvec_q8({umi::DType::Q8_0, fake, 8, 33}, fq, 1, fake, false, nullptr); });
  refuses([&] { umi::cuda::matvec_q8({umi::DType::Q4_0, fake, 8, 128}, fq, 1, fake, false, nullptr); });  // 256 != 128
  refuses([&] { umi::cuda::quantize_q8(fake, {fq.q, fq.ds, 33}, nullptr); });
  refuses([&] {  // the tensor cores without their scratch
    umi::cuda::MatvecTargets one;
    one.m[0] = {fake, 8, fake};
    one.count = 1;
    umi::cuda::matvec_q8(umi::DType::Q4_0, 32, one, {fq.q, fq.ds, 256}, 8, umi::cuda::MatvecOutput::store, nullptr,
                         umi::cuda::MatvecKernel::mma);
  });
  std::printf("{\"check\":\"refusals\",\"refused\":%d,\"of\":6}\n", refused);
  failures += refused != 6;
  std::printf("{\"check\":\"cuda_matvec\",\"failures\":%d}\n", failures);
  return failures == 0 ? 0 : 1;
}
