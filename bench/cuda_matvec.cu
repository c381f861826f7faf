// Checks and times the CUDA quantized matvec (batch-1 decode) on the device,
// one JSON line per (dtype, shape):
//   umi_cuda_matvec [reps]
// Correctness: random weights quantized by the CPU quantizer, random x, the
// reference is the CPU dequantizer's rows dotted in double;
// rel_err = |y - ref| / |ref| over the whole output, which is poisoned with
// NaN before each checked run (an unwritten row fails). Speed: median of
// `reps` event-timed runs, rotating over enough weight copies that they do
// not fit in L2; GB/s counts the weight bytes read.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "backend/cpu/dot.h"
#include "backend/cpu/quantize.h"
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

int run(umi::DType t, Shape s, int reps, std::mt19937& rng) {
  const size_t row_bytes = umi::dtype_bytes(t, static_cast<uint64_t>(s.cols)).value();
  const size_t bytes = row_bytes * static_cast<size_t>(s.rows);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<std::byte> w(bytes);
  std::vector<float> row(static_cast<size_t>(s.cols)), x(static_cast<size_t>(s.cols));
  for (int64_t r = 0; r < s.rows; ++r) {
    for (float& v : row) v = nd(rng);
    umi::cpu::quantize_row(t, row.data(), s.cols, w.data() + static_cast<size_t>(r) * row_bytes);
  }
  for (float& v : x) v = nd(rng);
  std::vector<double> ref(static_cast<size_t>(s.rows));
  for (int64_t r = 0; r < s.rows; ++r) {
    umi::cpu::dequantize(t, w.data() + static_cast<size_t>(r) * row_bytes, row.data(), s.cols);
    double acc = 0;
    for (int64_t c = 0; c < s.cols; ++c) acc += static_cast<double>(row[static_cast<size_t>(c)]) * x[static_cast<size_t>(c)];
    ref[static_cast<size_t>(r)] = acc;
  }
  // Copies enough to rotate past the L2 (50 MB on the H100): 256 MB in all.
  const int copies = static_cast<int>(std::max<size_t>(1, (256u << 20) / bytes + 1));
  std::vector<void*> dw(static_cast<size_t>(copies));
  for (void*& p : dw) {
    check(cudaMalloc(&p, bytes), "cudaMalloc w");
    check(cudaMemcpy(p, w.data(), bytes, cudaMemcpyHostToDevice), "copy w");
  }
  float *dx = nullptr, *dy = nullptr;
  check(cudaMalloc(&dx, x.size() * sizeof(float)), "cudaMalloc x");
  check(cudaMalloc(&dy, static_cast<size_t>(s.rows) * sizeof(float)), "cudaMalloc y");
  check(cudaMemcpy(dx, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice), "copy x");
  check(cudaMemset(dy, 0xFF, static_cast<size_t>(s.rows) * sizeof(float)), "poison y");  // NaN
  check(umi::cuda::matvec({t, dw[0], s.rows, s.cols}, dx, dy, nullptr), "launch");
  check(cudaDeviceSynchronize(), "run");
  std::vector<float> y(static_cast<size_t>(s.rows));
  check(cudaMemcpy(y.data(), dy, y.size() * sizeof(float), cudaMemcpyDeviceToHost), "copy y");
  double num = 0, den = 0;
  bool finite = true;
  for (size_t r = 0; r < y.size(); ++r) {
    finite &= std::isfinite(y[r]);
    num += (y[r] - ref[r]) * (y[r] - ref[r]);
    den += ref[r] * ref[r];
  }
  const double rel = finite ? std::sqrt(num / den) : INFINITY;
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  std::vector<float> ms;
  for (int i = 0; i < reps + 5; ++i) {
    const umi::cuda::QuantMatrix m{t, dw[static_cast<size_t>(i % copies)], s.rows, s.cols};
    check(cudaEventRecord(a), "record");
    check(umi::cuda::matvec(m, dx, dy, nullptr), "launch");
    check(cudaEventRecord(b), "record");
    check(cudaEventSynchronize(b), "sync");
    float t_ms = 0;
    check(cudaEventElapsedTime(&t_ms, a, b), "elapsed");
    if (i >= 5) ms.push_back(t_ms);  // the first runs warm up
  }
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2];
  std::printf("{\"kernel\":\"cuda_matvec\",\"dtype\":\"%s\",\"rows\":%lld,\"cols\":%lld,\"copies\":%d,\"rel_err\":%.3g,"
              "\"median_us\":%.2f,\"weight_gb_s\":%.1f}\n",
              std::string(umi::to_string(t)).c_str(), static_cast<long long>(s.rows), static_cast<long long>(s.cols), copies,
              rel, med * 1e3, static_cast<double>(bytes) / (med * 1e-3) / 1e9);
  std::fflush(stdout);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  for (void* p : dw) cudaFree(p);
  cudaFree(dx);
  cudaFree(dy);
  return rel < 1e-5 ? 0 : 1;  // f32 accumulation of exact products: far below this
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
    for (Shape s : shapes) failures += run(t, s, reps, rng);
  // Bad arguments are refused, not launched.
  int refused = 0;
  try {
    umi::cuda::matvec({umi::DType::Q4_K, reinterpret_cast<void*>(16), 8, 256}, reinterpret_cast<float*>(16), reinterpret_cast<float*>(16), nullptr);
  } catch (const std::exception&) {
    ++refused;
  }
  try {
    umi::cuda::matvec({umi::DType::Q8_0, reinterpret_cast<void*>(16), 8, 33}, reinterpret_cast<float*>(16), reinterpret_cast<float*>(16), nullptr);
  } catch (const std::exception&) {
    ++refused;
  }
  std::printf("{\"check\":\"refusals\",\"refused\":%d,\"of\":2}\n", refused);
  failures += refused != 2;
  std::printf("{\"check\":\"cuda_matvec\",\"failures\":%d}\n", failures);
  return failures == 0 ? 0 : 1;
}
