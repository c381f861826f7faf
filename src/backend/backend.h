// The seam between the forward pass and the hardware that runs it. The model
// (model/forward.cpp) reads top to bottom as calls on a Backend; the CPU
// backend (backend/cpu) runs them on the host's threads over the mapped file,
// the CUDA backend (backend/cuda) on the GPU over uploaded weights. A Metal
// backend would be a third implementation of this header, nothing more.
//
// Every float* an op takes is in the backend's own memory (memory()): host
// memory for the CPU, device memory for CUDA. Weight views (MatrixView,
// VectorView) point where bind_weights() left them. Ops are enqueued in order
// and may run asynchronously; read() is the one point where results reach
// the host, and it waits for everything before it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "backend/token_draw.h"
#include "backend/top_k.h"
#include "memory/pool.h"
#include "model/config.h"
#include "model/kv_block_pool.h"
#include "model/weights.h"

namespace umi {

enum class Device { automatic, cpu, cuda };
// "auto", "cpu", "cuda"; throws InputError for anything else.
Device parse_device(const std::string& name);
const char* to_string(Device d);

// What a backend needs to know of the model it runs, fixed at load.
struct BackendSetup {
  ModelConfig config;
  KvLayout kv;
  std::vector<float> inv_freq;  // [head_dim / 2]: RoPE frequencies after any scaling
  bool rope_interleaved = false;
  int64_t max_tokens = 512;     // most tokens one pass takes (the prefill chunk)
  int threads = 0;              // CPU threads; 0: all cores
  // A device backend's memory: activations, KV blocks and uploaded weights
  // (make_device_memory's pool, perhaps shared with other models); null on
  // the CPU, whose memory is the host pool.
  Pool* device_memory = nullptr;
};

// One run of consecutive tokens of one sequence in a pass: [first, end) of
// the pass's tokens, at consecutive positions, with that sequence's KV block
// table (blocks of kv_pool()).
struct TokenRun {
  int64_t first = 0, end = 0;
  int64_t first_position = 0;
  std::span<const int32_t> blocks;
  bool logits = false;  // the pass reads this run's last token's logits
};

struct PassTokens {
  std::span<const int32_t> ids;        // [T]
  std::span<const int64_t> positions;  // [T]
  std::span<const TokenRun> runs;      // cover [0, T) in order
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  // Memory for activations and KV blocks, counted like every other byte.
  virtual Pool& memory() = 0;
  virtual KvBlockPool& kv_pool() = 0;
  // Threads the CPU ops use (1 for device backends): activation layouts depend on it.
  virtual int64_t threads() const = 0;
  // Called once, first: makes `w` usable by the ops and counts its bytes (the
  // CPU reserves the mapped bytes and reads them in place; a device backend
  // uploads each tensor and re-points the view at its copy), then allocates
  // the backend's own working memory. Throws OutOfMemory.
  virtual void bind_weights(ModelWeights& w, uint64_t mapped_bytes) = 0;
  // A float buffer of `count` elements in memory(), counted as activations.
  virtual Buffer scratch(int64_t count, const char* what) = 0;

  // ---- one forward pass ----------------------------------------------------
  // The ops of a pass are the same calls with the same arguments whenever
  // its runs have the same lengths and logits flags (a backend may replay a
  // recorded pass instead of enqueuing them again).
  virtual void begin_pass(const PassTokens& pass) = 0;
  // x[t] = row ids[t] of `table` as floats                          [T, table.cols]
  virtual void embed(const MatrixView& table, float* x) = 0;
  // out[r] = x[r] / rms(x[r]) * w, rows of w.size floats (out may be x)
  virtual void rms_norm(const float* x, const VectorView& w, int64_t rows, float* out) = 0;
  // y[r] = w x[r]                                                   [rows, w.rows]
  virtual void matmul(const MatrixView& w, const float* x, int64_t rows, float* y) = 0;
  // Products of one input: ys[i] = ws[i] x[r] for each (q, k and v of a
  // layer). The default runs matmul on each; a backend may run them as one
  // job (the CPU prepares x once and splits all their rows in one pass).
  using Product = MatrixProduct;
  virtual void matmuls(const float* x, int64_t rows, std::span<const Product> products);
  // The feed-forward's gated product: gate = silu(x Wg^T) * (x Wu^T),
  // [rows, Wg.rows]; up, of that size, is the backend's scratch. The default
  // is two matmuls and swiglu.
  virtual void gated_matmul(const MatrixView& wg, const MatrixView& wu, const float* x, int64_t rows, float* gate, float* up);
  // x[r] += b, rows of b.size floats; nothing when b is absent
  virtual void add_bias(float* x, const VectorView& b, int64_t rows) = 0;
  // Per token of the pass: RMSNorm of each q and k head when the norms are
  // present (Qwen3), RoPE at the token's position, then its K and V into its
  // sequence's KV block at `layer`. q [T, H*hd], k and v [T, Hkv*hd].
  virtual void rope_store_kv(int64_t layer, float* q, float* k, const float* v, const VectorView& q_norm,
                             const VectorView& k_norm) = 0;
  // out = softmax(q K^T / sqrt(hd)) V over each token's own sequence, its
  // positions 0..its own (causal).                                  [T, H*hd]
  virtual void attention(int64_t layer, const float* q, float* out) = 0;
  // gate[i] = silu(gate[i]) * up[i]
  virtual void swiglu(float* gate, const float* up, int64_t n) = 0;
  // x[i] += y[i]
  virtual void add(float* x, const float* y, int64_t n) = 0;
  // Waits for the pass so far and copies n floats to the host.
  virtual void read(const float* src, int64_t n, float* host) = 0;
  // Waits for the pass so far; host[r] = the index of the largest of row r's
  // n floats (the first of equal ones): greedy decoding, where only the
  // token comes back instead of the row.                            [rows]
  virtual void argmax(const float* src, int64_t rows, int64_t n, int32_t* host) = 0;
  // Waits for the pass so far; out[r] (k and temperature set by the caller)
  // receives row r's best candidates as select_top_k (top_k.h) picks them:
  // sampling with top-k, where only those come back.                [rows]
  virtual void top_k(const float* src, int64_t rows, int64_t n, TopK* out) = 0;
  // Waits for the pass so far; out[r].token (its settings set by the
  // caller) = the token draw_token (token_draw.h) draws from row r, the
  // same bits: sampling from the whole vocabulary, where only the token
  // comes back.                                                      [rows]
  virtual void draw(const float* src, int64_t rows, int64_t n, TokenDraw* out) = 0;
  // Starts what is queued of the pass without waiting for it (a GPU
  // launches it), so that the host can work beside it. A no-op where the
  // pass runs as it is called.
  virtual void launch() {}
  // logits[i] = -infinity for every i < n whose bit in `allowed` (host
  // memory: bit i of word i / 32) is clear: the tokens a constrained output
  // (JSON mode, a schema) refuses, before argmax, top_k or draw.    [n]
  virtual void mask_logits(float* logits, int64_t n, const uint32_t* allowed) = 0;
};

// The memory of a device that has its own (a discrete GPU): one pool that
// every model on the device draws from, so that one limit covers them all as
// the host pool's does on the CPU. Buffers of one model may be reused by
// another: a backend frees nothing its queued work still reads (every pass
// ends in a read(), which waits).
class DeviceMemory {
 public:
  virtual ~DeviceMemory() = default;
  virtual Pool& pool() = 0;
};

// The device memory that make_backend(device, ...) runs on: null when that is
// the CPU. `limit` in bytes; 0: what the device has free now, less a margin
// for the driver's own growth. Throws InputError when the device is not
// available, or when `limit` is more than the device has free.
std::unique_ptr<DeviceMemory> make_device_memory(Device device, uint64_t limit);

// The backend for `device` (automatic: CUDA when this build has it and a GPU
// is present, else the CPU). `host` is the process's pool; a device backend
// takes its memory from setup.device_memory (make_device_memory for the same
// device). Throws InputError when the device is not available in this build
// or on this machine.
std::unique_ptr<Backend> make_backend(Device device, Pool& host, const BackendSetup& setup);
// Whether make_backend(device, ...) can succeed here (build and machine).
bool device_available(Device device);

}  // namespace umi
