// The x86 kernels built for AVX-512 VNNI (256-bit dot products; 512-bit GEMM tiles) (this file gets
// -mavx512f -mavx512bw -mavx512vl -mavx512vnni on top of AVX2): vpdpbusd
// multiplies and sums four byte pairs per lane in one instruction.
// GCC 12's own _mm512_undefined_*() (self-initialised on purpose) trips its
// -Wmaybe-uninitialized in every 512-bit intrinsic that uses it, and
// -Wuninitialized in the 256-to-512-bit casts.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include "backend/cpu/attention_impl.h"
#include "backend/cpu/dot_x86.h"
#include "backend/cpu/elementwise_impl.h"
#include "backend/cpu/pair_dot_avx512.h"

namespace umi::cpu {

const KernelSet& avx512vnni_kernels() {
  static constexpr KernelSet set{
      "avx512vnni", impl_table, [](DType t) { return x86_qkernels(t).first; },
      [](DType t) { return x86_qkernels(t).second; }, x86_qgemm, x86_scale_add, impl_quantize_activations,
      impl_kv_to_f32, impl_attn_scores, impl_attn_accumulate, avx512_qpair,
      impl_swiglu, impl_exp_sum, impl_kv_from_f32, impl_quantize_activations_k, impl_attn_keys};
  return set;
}

}  // namespace umi::cpu
