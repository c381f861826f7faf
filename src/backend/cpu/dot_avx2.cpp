// The x86 kernels built for AVX2 + FMA + F16C (this file gets those flags).
#include "backend/cpu/attention_impl.h"
#include "backend/cpu/dot_x86.h"
#include "backend/cpu/elementwise_impl.h"
#include "backend/cpu/pair_dot_avx2.h"

namespace umi::cpu {

const KernelSet& avx2_kernels() {
  static constexpr KernelSet set{
      "avx2", impl_table, [](DType t) { return x86_qkernels(t).first; }, [](DType t) { return x86_qkernels(t).second; },
      x86_qgemm, x86_scale_add, impl_quantize_activations,
      impl_kv_to_f32, impl_attn_scores, impl_attn_accumulate, avx2_qpair,
      impl_swiglu, impl_exp_sum, impl_kv_from_f32, impl_quantize_activations_k, impl_attn_keys};
  return set;
}

}  // namespace umi::cpu
