// The kernels of one instruction-set build (portable, AVX2, AVX-512 VNNI,
// arm64 NEON with DotProd):
// dot.cpp picks one set at first use from what the CPU reports, so one
// binary runs everywhere and uses what it finds.
#pragma once

#include <vector>

#include "backend/cpu/dot.h"
#include "backend/cpu/gemm.h"
#include "backend/cpu/q8_pairs.h"

namespace umi::cpu {

struct KernelSet {
  const char* name;
  DotFn (*dot)(DType);
  QDotFn (*qdot)(DType);
  QDot4Fn (*qdot4)(DType);
  QGemmFn (*qgemm)(DType);  // nullptr where there is no tiled GEMM
  void (*scale_add)(float* acc, float scale, float w, const std::byte* v, DType v_type, int64_t n);
  void (*quantize)(const float* x, int64_t n, Q8Block* out);
  void (*kv_to_f32)(const std::byte* row, DType t, int64_t n, float* out);
  void (*attn_scores)(const float* q, int64_t q_stride, int64_t nq, const float* k, int64_t nk, int64_t hd, float scale,
                      float* scores);
  void (*attn_accumulate)(const float* w, int64_t nq, const float* v, int64_t nk, int64_t hd, float* acc, int64_t acc_stride);
  QPairDotFn (*qpair)(DType);  // single-token rows two blocks at a time (q8_pairs.h); nullptr where there are none
  void (*swiglu)(float* gate, const float* up, int64_t n);
  float (*exp_sum)(float* s, int64_t n, float shift);
  void (*kv_from_f32)(const float* x, DType t, int64_t n, std::byte* row);
  void (*quantize_k)(const float* x, int64_t n, Q8KBlock* out);
  void (*attn_keys)(const float* q, int64_t nq, const std::byte* k, const std::byte* v, size_t stride, DType t, int64_t n,
                    int64_t hd, float scale, float* row_max, float* denom, float* o);
};

const KernelSet& portable_kernels();
// Every build this CPU can run, best last (tests run them all).
std::vector<const KernelSet*> runnable_kernel_sets();
#if defined(UMI_HAVE_X86_BUILDS)
const KernelSet& avx2_kernels();        // dot_avx2.cpp
const KernelSet& avx512vnni_kernels();  // dot_avx512vnni.cpp
#endif
#if defined(UMI_HAVE_ARM_BUILDS)
const KernelSet& neon_kernels();  // dot_neon.cpp
#endif

}  // namespace umi::cpu
