// Sampling candidates on the device: each row's k best logits / temperature
// (backend/top_k.h's order), so that only they cross to the host.
//
// A candidate travels as one 64-bit key whose integer order is its rank:
// the value's bits made monotonic in the high word, the complement of its id
// in the low word (equal values: the lower id is the larger key). Key 0 is
// no candidate (a non-finite logit). Each round sorts slices of 4096 keys in
// shared memory (bitonic) and keeps every slice's best k; rounds repeat on
// the survivors until one slice is left (a 128256-token row: two rounds).
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace umi::cuda {

constexpr int kTopKMax = 512;  // the most candidates one call selects

// Scratch for top_k_rows (bytes, 8-byte aligned).
size_t top_k_scratch_bytes(int64_t rows, int64_t n, int k);

// keys [rows, k] = the k best of each row of x [rows, n] divided by
// temperatures[r] (device, > 0), best first; fewer finite values than k
// leave key 0 after them. rows < 65536, 1 <= k <= kTopKMax.
cudaError_t top_k_rows(const float* x, int64_t rows, int64_t n, const float* temperatures, int k, uint64_t* keys,
                       void* scratch, size_t scratch_bytes, cudaStream_t stream);

// A key back into its candidate (host and device).
inline float top_k_key_value(uint64_t key) {
  const uint32_t o = static_cast<uint32_t>(key >> 32), bits = (o & 0x80000000u) ? (o & 0x7FFFFFFFu) : ~o;
  float v;
  static_assert(sizeof v == sizeof bits);
  __builtin_memcpy(&v, &bits, sizeof v);
  return v;
}
inline int32_t top_k_key_id(uint64_t key) { return static_cast<int32_t>(0xFFFFFFFFu - static_cast<uint32_t>(key)); }

}  // namespace umi::cuda
