// Kernel launches with programmatic dependent launch (Hopper): the next
// kernel in the stream (or graph) is scheduled onto the SMs while this one
// still runs, so that its launch, and its loads of weights (which no kernel
// writes), overlap this kernel's work and tail instead of following them.
//
// The rule every kernel launched with launch() keeps: wait_for_inputs()
// before it reads anything an earlier kernel wrote or writes anything; only
// loads of weights and of the pass's tables (copied to the device before the
// step's first kernel, written by no kernel) may come before. wait_for_inputs() then lets the next kernel
// launch (griddepcontrol.launch_dependents): it launches once every block of
// this one has passed its wait, that is once the kernel before has finished,
// so at most two kernels are ever waiting at once, and each one's own wait
// orders it after everything earlier (the kernel before finished only after
// its own wait).
//
// Session 8 measured the attribute alone (every kernel waiting first, no
// early trigger: the next kernel could only launch when this one's blocks
// had all exited) within noise, and reverted it.
#pragma once

#include <string>
#include <utility>

#include <cuda_runtime.h>

#include "core/error.h"

namespace umi::cuda {

// Blocks until the kernels this one depends on have finished and their
// writes are visible, then allows the next kernel to launch (both no-ops
// when launched without the attribute).
__device__ inline void wait_for_inputs() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
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
