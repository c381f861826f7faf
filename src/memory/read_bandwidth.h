// The rate at which this machine's cores can stream memory: the roofline of a
// decode step, which reads every weight once per token (issue: CPU decode at
// 85% of it). One helper, so that `umi bench --scenario roofline` and
// umi_bench_bandwidth measure the same way.
#pragma once

#include <cstddef>

namespace umi {

// Bytes per second for `threads` threads summing [data, data + bytes) in
// contiguous slices, the best of `passes` passes. The buffer should be much
// larger than the caches (a decode step's weights are).
double read_bandwidth(const std::byte* data, size_t bytes, int threads, int passes);

}  // namespace umi
