// The baseline build of the dot loops, the scalar reference, activation
// quantization, and the choice between builds.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "backend/cpu/attention_impl.h"
#include "backend/cpu/dot_impl.h"
#include "backend/cpu/elementwise_impl.h"
#include "backend/cpu/half.h"
#include "backend/cpu/kernel_set.h"
#include "core/error.h"

#if defined(UMI_HAVE_ARM_BUILDS) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#elif defined(UMI_HAVE_ARM_BUILDS) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace umi::cpu {

const KernelSet& portable_kernels() {
  static constexpr KernelSet set{"portable", impl_table, impl_qtable, [](DType) -> QDot4Fn { return nullptr; },
                                 [](DType) -> QGemmFn { return nullptr; }, impl_scale_add,
                                 impl_quantize_activations, impl_kv_to_f32, impl_attn_scores, impl_attn_accumulate,
                                 [](DType) -> QPairDotFn { return nullptr; }, impl_swiglu, impl_exp_sum,
                                 impl_kv_from_f32, impl_quantize_activations_k, impl_attn_keys};
  return set;
}

namespace {
#if defined(UMI_HAVE_ARM_BUILDS)
// Whether this arm64 CPU has the Armv8.2 dot-product instructions (sdot).
// Other systems: no, and the portable set runs.
bool arm_has_dotprod() {
#if defined(__linux__)
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
  int has = 0;
  size_t size = sizeof has;
  return sysctlbyname("hw.optional.arm.FEAT_DotProd", &has, &size, nullptr, 0) == 0 && has != 0;
#else
  return false;
#endif
}
#endif
}  // namespace

std::vector<const KernelSet*> runnable_kernel_sets() {
  std::vector<const KernelSet*> sets{&portable_kernels()};
#if defined(UMI_HAVE_ARM_BUILDS)
  if (arm_has_dotprod()) sets.push_back(&neon_kernels());
#endif
#if defined(UMI_HAVE_X86_BUILDS)
  __builtin_cpu_init();
  // F16C is not a feature name clang 14 accepts here; every AVX2 CPU has it.
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return sets;
  sets.push_back(&avx2_kernels());
  if (__builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni") &&
      __builtin_cpu_supports("bmi2"))
    sets.push_back(&avx512vnni_kernels());
#endif
  return sets;
}

namespace {
// The best build this CPU runs, decided once: a fact of the machine.
const KernelSet& chosen() {
  static const KernelSet& set = *runnable_kernel_sets().back();
  return set;
}
}  // namespace

const char* kernel_isa() { return chosen().name; }
DotFn dot_function(DType t) { return chosen().dot(t); }
DotFn dot_portable(DType t) { return impl_table(t); }
QDotFn qdot_function(DType t) { return chosen().qdot(t); }
QDotFn qdot_portable(DType t) { return impl_qtable(t); }
QDot4Fn qdot4_function(DType t) { return chosen().qdot4(t); }
QGemmFn qgemm_function(DType t) { return chosen().qgemm(t); }
QPairDotFn qpair_function(DType t) { return chosen().qpair(t); }
void scale_add(float* acc, float scale, float w, const std::byte* v, DType v_type, int64_t n) {
  chosen().scale_add(acc, scale, w, v, v_type, n);
}

void quantize_activations(const float* x, int64_t n, Q8Block* out) { chosen().quantize(x, n, out); }
void quantize_activations_k(const float* x, int64_t n, Q8KBlock* out) { chosen().quantize_k(x, n, out); }
void kv_to_f32(const std::byte* row, DType t, int64_t n, float* out) { chosen().kv_to_f32(row, t, n, out); }
void swiglu(float* gate, const float* up, int64_t n) { chosen().swiglu(gate, up, n); }
float exp_sum(float* s, int64_t n, float shift) { return chosen().exp_sum(s, n, shift); }
void kv_from_f32(const float* x, DType t, int64_t n, std::byte* row) { chosen().kv_from_f32(x, t, n, row); }
void attn_scores(const float* q, int64_t q_stride, int64_t nq, const float* k, int64_t nk, int64_t hd, float scale, float* scores) {
  chosen().attn_scores(q, q_stride, nq, k, nk, hd, scale, scores);
}
void attn_accumulate(const float* w, int64_t nq, const float* v, int64_t nk, int64_t hd, float* acc, int64_t acc_stride) {
  chosen().attn_accumulate(w, nq, v, nk, hd, acc, acc_stride);
}
void attn_keys(const float* q, int64_t nq, const std::byte* k, const std::byte* v, size_t stride, DType t, int64_t n, int64_t hd,
               float scale, float* row_max, float* denom, float* o) {
  if (hd < 1 || hd > kAttnKeysMaxHeadDim || n < 0 || nq < 0) throw Error("attn_keys: head dim or counts out of range");
  chosen().attn_keys(q, nq, k, v, stride, t, n, hd, scale, row_max, denom, o);
}

float dot_reference(DType t, const std::byte* row, const float* x, int64_t n) {
  std::vector<float> w(static_cast<size_t>(n));
  dequantize(t, row, w.data(), n);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(w[static_cast<size_t>(i)]) * x[i];
  return static_cast<float>(s);
}

}  // namespace umi::cpu
