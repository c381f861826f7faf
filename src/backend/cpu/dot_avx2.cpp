// The dot loops compiled for AVX2 + FMA (this file gets -mavx2 -mfma -mf16c).
#include "backend/cpu/dot_impl.h"

namespace umi::cpu {
DotFn dot_avx2(DType t) { return impl_table(t); }
}  // namespace umi::cpu
