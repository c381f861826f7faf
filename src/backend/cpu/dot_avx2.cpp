// The x86 kernels built for AVX2 + FMA + F16C (this file gets those flags).
#include "backend/cpu/dot_x86.h"

namespace umi::cpu {

const KernelSet& avx2_kernels() {
  static constexpr KernelSet set{
      "avx2", impl_table, [](DType t) { return x86_qkernels(t).first; }, [](DType t) { return x86_qkernels(t).second; },
      x86_qgemm, x86_scale_add, impl_quantize_activations,
      impl_kv_to_f32, impl_attn_scores, impl_attn_accumulate, [](DType) -> QPairDotFn { return nullptr; }};
  return set;
}

}  // namespace umi::cpu
