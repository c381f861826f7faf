// Kernel launches with programmatic dependent launch (Hopper): a kernel may
// be scheduled onto the SMs while the kernel before it in the stream (or
// graph) is still finishing, hiding the gap between them (measured: a decode
// step's graph ran ~220 us longer on the GPU than its ~330 kernels' own
// times, the gaps between small back-to-back kernels). The price: a kernel
// launched this way must call wait_for_inputs() before it reads anything
// an earlier kernel wrote; every kernel launched with launch() calls it
// first, so only the launch overlaps, never the work.
#pragma once

#include <string>
#include <utility>

#include <cuda_runtime.h>

#include "core/error.h"

namespace umi::cuda {

// Blocks until the kernels this one depends on have finished and their
// writes are visible (a no-op when it was launched without the attribute).
__device__ inline void wait_for_inputs() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// kernel<<<grid, block, smem, stream>>>(args...) with the dependent-launch
// attribute; throws umi::Error when the launch fails.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  config.attrs = attr;
  config.numAttrs = 1;
  const cudaError_t e = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
  if (e != cudaSuccess) throw Error(std::string("cuda launch: ") + cudaGetErrorString(e));
}

}  // namespace umi::cuda
