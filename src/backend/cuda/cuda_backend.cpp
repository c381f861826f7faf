#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <unistd.h>

#include "backend/cuda/device_info.h"
#include "backend/cuda/quant_layout.h"
#include "backend/cuda/quant_matvec.h"
#include "backend/cuda/logit_mask.h"
#include "backend/cuda/token_draw.h"
#include "backend/cuda/top_k.h"
#include "core/error.h"
#include "core/units.h"

namespace umi::cuda {

namespace {

void ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string("cuda: ") + what + ": " + cudaGetErrorString(e));
}

constexpr size_t kStagingBytes = 32u << 20;  // each of the three upload buffers
constexpr int kStagingBuffers = 3;
constexpr int64_t kIntegerTokens = 64;  // quantized products of up to this many tokens are integer ones (graphs too)
constexpr int64_t kTensorCoreTokens = 32;  // from here a quantized product past the integer ones is a cuBLAS GEMM
// Float weights go to cuBLAS from here (as llama.cpp's, past its 8-token
// matvec): the generic kernel keeps f32 activations but reads them 16 bytes
// per weight byte and ran 8-token passes at ~0.8 TB/s (8B BF16: a 31-token
// prompt 82 ms, a 512-token one on cuBLAS 19 ms). Below it the products
// are f32 throughout, as the transformers fixtures (chunks of 8) require.
constexpr int64_t kFloatGemmTokens = 9;
constexpr size_t kWeightSliceBytes = 64u << 20;  // f16 weight rows per GEMM
constexpr size_t kBlasWorkspaceBytes = 32u << 20;
constexpr size_t kAttentionPartialBytes = 16u << 20;  // split attention's partial softmax states

void blas_ok(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw Error(std::string("cublas: ") + what + ": status " + std::to_string(static_cast<int>(s)));
}

WeightMatrix device_matrix(const MatrixView& m) { return {m.dtype, m.data, m.rows, m.cols}; }
WeightVector device_vector(const VectorView& v) { return {v.dtype, v.data, v.size}; }

size_t align8(size_t n) { return (n + 7) / 8 * 8; }
size_t align16(size_t n) { return (n + 15) / 16 * 16; }
uint64_t word(const void* p) { return reinterpret_cast<uintptr_t>(p); }

}  // namespace

namespace {
Pool& given_device_memory(const BackendSetup& setup) {
  if (!setup.device_memory) throw Error("cuda: the backend was given no device memory (make_device_memory)");
  return *setup.device_memory;
}
}  // namespace

CudaBackend::CudaBackend(Pool& host, const BackendSetup& setup) : host_(host), setup_(setup), device_pool_(given_device_memory(setup)) {
  if (device_count() == 0) throw InputError("--device cuda: no CUDA device is visible to this process");
  ok(cudaSetDevice(0), "set device");
  if (!ops_support_kv(setup_.kv.dtype))
    throw InputError("--kv-dtype " + std::string(to_string(setup_.kv.dtype)) + " is not supported on CUDA (f16, f32, q8_0)");
  if (setup_.config.head_dim > 256 || setup_.config.head_dim % 8 != 0)
    throw InputError("head_dim " + std::to_string(setup_.config.head_dim) + " is not supported on CUDA (a multiple of 8, at most 256)");
  group_tokens_ = attention_tokens_per_group(head_shape(), setup_.kv.dtype);
  kv_pool_ = std::make_unique<KvBlockPool>(device_pool_, setup_.kv);
  ok(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream");
}

// Pinned host buffers and the event that says each is free again, counted
// in the host pool.
struct CudaBackend::StagingRing {
  explicit StagingRing(Pool& host) : pinned(host.reserve(kStagingBuffers * kStagingBytes, MemoryUse::scratch, "pinned upload buffers")) {
    try {
      for (int i = 0; i < kStagingBuffers; ++i) {
        void* p = nullptr;
        ok(cudaMallocHost(&p, kStagingBytes), "pinned staging buffer");
        buffers.push_back(p);
        cudaEvent_t e;
        ok(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "event");
        copied.push_back(e);
      }
    } catch (...) {
      release();
      throw;
    }
  }
  ~StagingRing() { release(); }
  void release() {
    for (cudaEvent_t e : copied) {
      cudaEventSynchronize(e);  // no copy still reads a buffer (an upload that threw midway)
      cudaEventDestroy(e);
    }
    for (void* p : buffers) cudaFreeHost(p);
    copied.clear();
    buffers.clear();
  }
  Reservation pinned;
  std::vector<void*> buffers;
  std::vector<cudaEvent_t> copied;  // [i]: the last copy out of buffers[i] is done
  size_t slot = 0;  // the next buffer of the ring
};

CudaBackend::~CudaBackend() {
  if (mode_ == Mode::capture) {
    cudaGraph_t g = nullptr;
    if (cudaStreamEndCapture(stream_, &g) == cudaSuccess && g) cudaGraphDestroy(g);
    cudaGetLastError();
  }
  if (stream_) cudaStreamSynchronize(stream_);
  for (auto& [key, graph] : graphs_) cudaGraphExecDestroy(graph.exec);
  if (blas_) cublasDestroy(blas_);
  ring_.reset();
  if (pass_host_) cudaFreeHost(pass_host_);
  pass_device_.reset();
  inv_freq_.reset();
  blas_workspace_.reset();
  attn_partial_.reset();
  argmax_ids_.reset();
  top_k_buffer_.reset();
  draw_buffer_.reset();
  mask_bits_.reset();
  w16_.reset();
  x16_.reset();
  q8_buffer_.reset();
  norm_q8_.reset();
  norm_sums_.reset();
  split_staging_.reset();
  weights_.clear();
  kv_pool_.reset();
  if (stream_) cudaStreamDestroy(stream_);
}

// One tensor through the ring: the CPU copies chunk i from the mapping into
// staging buffer i % 3 (touching the file's pages) while the copies of the
// chunks before it run on the DMA engine. Q8_0/Q4_0/Q6_K matrices, and
// Q5_0/Q4_1/Q5_1 ones (rewritten as Q8_0 or F16), go through a device buffer,
// from which a kernel writes each chunk's blocks into the device layout
// (quant_layout.h); chunks then hold whole blocks.
const std::byte* CudaBackend::upload(const std::byte* host, size_t bytes, DType split) {
  if (!host || bytes == 0) return host;
  if (auto it = uploaded_.find(host); it != uploaded_.end()) return it->second;
  const bool splitting = is_rewritten_on_upload(split);
  const size_t block_bytes = splitting ? dtype_info(split).block_bytes : 1;
  const int64_t total_blocks = static_cast<int64_t>(bytes / block_bytes);
  weights_.push_back(device_pool_.allocate(splitting ? device_matrix_bytes(split, total_blocks) : bytes, MemoryUse::weights,
                                            "weights on the device"));
  auto* dst = weights_.back().as<std::byte>();
  const size_t chunk = kStagingBytes / block_bytes * block_bytes;
  static_assert(kStagingBuffers > 0);
  StagingRing& ring = *ring_;
  for (size_t done = 0; done < bytes; done += chunk, ++ring.slot) {
    const size_t n = std::min(chunk, bytes - done);
    const size_t i = ring.slot % kStagingBuffers;
    ok(cudaEventSynchronize(ring.copied[i]), "upload wait");
    std::memcpy(ring.buffers[i], host + done, n);
    if (splitting) {
      ok(cudaMemcpyAsync(split_staging_.data(), ring.buffers[i], n, cudaMemcpyHostToDevice, stream_), "upload copy");
      ok(split_blocks(split, split_staging_.data(), static_cast<int64_t>(done / block_bytes), static_cast<int64_t>(n / block_bytes),
                      total_blocks, dst, stream_),
         "split blocks");
    } else {
      ok(cudaMemcpyAsync(dst + done, ring.buffers[i], n, cudaMemcpyHostToDevice, stream_), "upload copy");
    }
    ok(cudaEventRecord(ring.copied[i], stream_), "upload event");
  }
  uploaded_[host] = dst;
  return dst;
}

void CudaBackend::bind_weights(ModelWeights& w, uint64_t mapped_bytes) {
  const auto start = std::chrono::steady_clock::now();
  const bool tty = isatty(2);
  uint64_t sent = 0;
  ring_ = std::make_unique<StagingRing>(host_);
  split_staging_ = device_pool_.allocate(kStagingBytes, MemoryUse::scratch, "upload split buffer");
  bool float_matrix = false;  // a product reads f16/bf16/f32 weights (the embedding is only looked up)
  auto matrix = [&](MatrixView& m) {
    if (!m.data) return;
    const DType on_device = device_dtype(m.dtype);  // e.g. Q5_0 as Q8_0, Q4_1 as F16 (quant_layout.h)
    if (!ops_support_matrix(on_device))
      throw InputError("weight type " + std::string(to_string(m.dtype)) +
                       " is not supported on CUDA yet (f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k..q6_k, iq4_nl, iq4_xs are)");
    if (m.cols % 32 != 0) throw InputError("a matrix of " + std::to_string(m.cols) + " columns is not supported on CUDA (a multiple of 32)");
    quantized_ |= matvec_q8_supports(on_device);
    float_matrix |= &m != &w.embed && !matvec_q8_supports(on_device);
    widest_ = std::max(widest_, m.cols);
    const size_t file_bytes = m.bytes();
    m.data = upload(m.data, file_bytes, m.dtype);
    m.dtype = on_device;
    sent += file_bytes;
    if (tty)
      std::fprintf(stderr, "\r[upload] %s / %s", format_bytes(sent).c_str(), format_bytes(mapped_bytes).c_str());
  };
  auto vector = [&](VectorView& v) {
    if (!v.data) return;
    if (!ops_support_vector(v.dtype)) throw InputError("vector type " + std::string(to_string(v.dtype)) + " is not supported on CUDA");
    v.data = upload(v.data, v.bytes(), DType::F32);
    sent += v.bytes();
  };
  matrix(w.embed);
  matrix(w.output);
  vector(w.final_norm);
  w.rope_freqs = {};  // folded into inv_freq on the host
  for (LayerWeights& L : w.layers) {
    for (VectorView* v : {&L.attn_norm, &L.ffn_norm, &L.q_norm, &L.k_norm, &L.q_bias, &L.k_bias, &L.v_bias}) vector(*v);
    for (MatrixView* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down}) matrix(*m);
  }
  ok(cudaStreamSynchronize(stream_), "upload");
  split_staging_.reset();
  ring_.reset();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr, "%s[upload] %s to the GPU in %.2f s (%.2f GB/s)\n", tty ? "\r" : "", format_bytes(sent).c_str(),
               seconds, static_cast<double>(sent) / seconds / 1e9);
  upload_seconds_ = seconds;
  // Quantized activations for the integer matvec: up to the largest batch
  // it takes, the widest matrix input.
  if (quantized_) {
    const int64_t tokens = std::min(kIntegerTokens, setup_.max_tokens), cols = std::max(widest_, setup_.config.hidden_size);
    const int64_t n = tokens * cols;  // q at 0, ds at align16(n) (n / 4 bytes), tensor-core tiles at 2n
    q8_buffer_ = device_pool_.allocate(static_cast<size_t>(2 * n + q8_tiles_bytes(tokens, cols)), MemoryUse::activations,
                                        "q8 activations");
    q8_values_ = n;
  }
  const int64_t d = setup_.config.hidden_size;
  // Norms can live inside the products when every product that reads a
  // norm's output is an integer one (rms_norm()).
  if (quantized_ && !float_matrix && d % 32 == 0) {
    norm_rows_ = d;
    norm_q8_ = device_pool_.allocate(align16(static_cast<size_t>(d)) + static_cast<size_t>(d / 32) * sizeof(float2),
                                      MemoryUse::activations, "norm q8 activations");
    norm_sums_ = device_pool_.allocate(static_cast<size_t>(d / 32) * sizeof(float), MemoryUse::activations, "norm sums");
  }
  // RoPE frequencies, and the pass buffers.
  inv_freq_ = device_pool_.allocate(setup_.inv_freq.size() * sizeof(float), MemoryUse::activations, "rope frequencies");
  ok(cudaMemcpy(inv_freq_.data(), setup_.inv_freq.data(), setup_.inv_freq.size() * sizeof(float), cudaMemcpyHostToDevice),
     "rope frequencies");
  attn_partial_ = device_pool_.allocate(kAttentionPartialBytes, MemoryUse::scratch, "attention partials");
  // Prefill GEMM scratch, sized for the widest matrix and the largest chunk
  // (fixed: it does not grow with the prompt).
  if (setup_.max_tokens >= kTensorCoreTokens || (float_matrix && setup_.max_tokens >= kFloatGemmTokens)) {
    const ModelConfig& c = setup_.config;
    const int64_t widest = std::max({c.hidden_size, c.intermediate_size, c.q_dim()});
    blas_ok(cublasCreate(&blas_), "create");
    blas_ok(cublasSetStream(blas_, stream_), "stream");
    blas_workspace_ = device_pool_.allocate(kBlasWorkspaceBytes, MemoryUse::scratch, "cuBLAS workspace");
    blas_ok(cublasSetWorkspace(blas_, blas_workspace_.data(), kBlasWorkspaceBytes), "workspace");
    w16_elems_ = static_cast<int64_t>(kWeightSliceBytes / 2);
    w16_ = device_pool_.allocate(kWeightSliceBytes, MemoryUse::scratch, "f16 weight slice");
    x16_ = device_pool_.allocate(static_cast<size_t>(setup_.max_tokens * widest) * 2, MemoryUse::scratch, "f16 activations");
  }
}

Buffer CudaBackend::scratch(int64_t count, const char* what) {
  return device_pool_.allocate(static_cast<size_t>(count) * sizeof(float), MemoryUse::activations, what);
}

// Runs what the pass has recorded: the captured graph, once instantiated and
// kept for the next pass of this shape, or the kept graph being replayed.
void CudaBackend::finish_pass() {
  const Mode mode = mode_;
  mode_ = Mode::eager;
  if (mode == Mode::eager) return;
  if (mode == Mode::capture) {
    cudaGraph_t graph = nullptr;
    ok(cudaStreamEndCapture(stream_, &graph), "end of graph capture");
    if (graphs_.size() >= 32) {  // many batch shapes: keep the set small
      for (auto& [key, g] : graphs_) cudaGraphExecDestroy(g.exec);
      graphs_.clear();
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    ok(e, "graph instantiate");
    graphs_[pass_key_] = {exec, signature_};
  }
  const Graph& g = graphs_.at(pass_key_);
  // The forward pass is a function of the pass's shape: a replay that was
  // handed other calls than the recording is a bug, never run silently.
  if (g.signature != signature_) throw Error("cuda: a replayed pass made other calls than the one recorded for its shape");
  ok(cudaGraphLaunch(g.exec, stream_), "graph launch");
}

// Every op adds its name and arguments to the pass's signature; it returns
// false when the op must not be enqueued (the pass is a replay).
bool CudaBackend::record(std::initializer_list<uint64_t> call) {
  op_before_ = op_;
  op_ = *call.begin();
  for (uint64_t v : call) signature_ = (signature_ ^ v) * 0x100000001b3ull;  // FNV-1a over 64-bit words
  return mode_ != Mode::replay;
}

void CudaBackend::begin_pass(const PassTokens& pass) {
  // A pass that read nothing back (a prefill chunk without logits) still runs.
  flush_pending();  // nothing is pending in a replay
  finish_pass();
  q8_holds(nullptr, 0);
  const size_t T = pass.ids.size();
  size_t blocks = 0, groups = 0;
  for (const TokenRun& r : pass.runs) {
    blocks += r.blocks.size();
    groups += static_cast<size_t>((r.end - r.first + group_tokens_ - 1) / group_tokens_);
  }
  // Layout: ids [T] i32, positions [T] i64, table starts [T] i32, groups
  // [groups] i32, block pointers [blocks].
  const size_t at_pos = align8(T * 4), at_table = at_pos + T * 8, at_groups = at_table + align8(T * 4),
               at_blocks = at_groups + align8(groups * 4), need = at_blocks + blocks * sizeof(void*);
  // The previous pass's copy must be done before its staging is rewritten.
  ok(cudaStreamSynchronize(stream_), "pass");
  if (need > pass_bytes_) {
    const size_t bytes = std::max(need * 2, size_t{64} << 10);
    if (pass_host_) cudaFreeHost(pass_host_);
    pass_host_ = nullptr;
    ok(cudaMallocHost(&pass_host_, bytes), "pinned pass buffer");
    pass_device_ = device_pool_.allocate(bytes, MemoryUse::activations, "pass tables");
    pass_bytes_ = bytes;
    for (auto& [key, g] : graphs_) cudaGraphExecDestroy(g.exec);  // they read the old tables
    graphs_.clear();
  }
  auto* h = static_cast<std::byte*>(pass_host_);
  std::memcpy(h, pass.ids.data(), T * 4);
  std::memcpy(h + at_pos, pass.positions.data(), T * 8);
  auto* table_start = reinterpret_cast<int32_t*>(h + at_table);
  auto* group = reinterpret_cast<int32_t*>(h + at_groups);
  auto* block_ptrs = reinterpret_cast<void**>(h + at_blocks);
  size_t b = 0, g = 0;
  for (const TokenRun& r : pass.runs) {
    for (int64_t t = r.first; t < r.end; ++t) table_start[t] = static_cast<int32_t>(b);
    for (int64_t t = r.first; t < r.end; t += group_tokens_)
      group[g++] = static_cast<int32_t>(t | (std::min(group_tokens_, r.end - t) << 24));
    for (int32_t id : r.blocks) block_ptrs[b++] = kv_pool_->data(id);
  }
  ok(cudaMemcpyAsync(pass_device_.data(), pass_host_, need, cudaMemcpyHostToDevice, stream_), "pass copy");
  auto* d = pass_device_.as<std::byte>();
  ids_ = reinterpret_cast<int32_t*>(d);
  positions_ = reinterpret_cast<int64_t*>(d + at_pos);
  table_start_ = reinterpret_cast<int32_t*>(d + at_table);
  groups_ = reinterpret_cast<int32_t*>(d + at_groups);
  block_ptrs_ = reinterpret_cast<void**>(d + at_blocks);
  tokens_ = static_cast<int64_t>(T);
  n_groups_ = static_cast<int64_t>(groups);
  // Attention's split count follows the longest context, rounded up to a
  // power of two so that decode steps share a recording until it doubles.
  int64_t max_position = 0;
  for (int64_t p : pass.positions) max_position = std::max(max_position, p);
  attn_positions_ = 32;  // attention's splits take 32 keys: one at the start of a context
  while (attn_positions_ <= max_position) attn_positions_ *= 2;
  // Few-token passes (decode) are recorded as CUDA graphs, one per shape,
  // and replayed: the GPU runs the ~330 kernels of a step back to back and
  // the CPU neither launches nor captures them again. Prefill passes run
  // as launched (their kernels are long; their shapes rarely repeat).
  signature_ = 0;
  if (tokens_ > kIntegerTokens) return;
  pass_key_ = static_cast<uint64_t>(attn_positions_) * 0x9E3779B97F4A7C15ull;
  for (const TokenRun& r : pass.runs)
    pass_key_ = (pass_key_ ^ static_cast<uint64_t>((r.end - r.first) * 2 + (r.logits ? 1 : 0))) * 0x100000001b3ull;
  if (graphs_.count(pass_key_)) {
    mode_ = Mode::replay;
    return;
  }
  ok(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "graph capture");
  mode_ = Mode::capture;
}

HeadShape CudaBackend::head_shape() const {
  const ModelConfig& c = setup_.config;
  return {static_cast<int>(c.n_heads), static_cast<int>(c.n_kv_heads), static_cast<int>(c.head_dim)};
}

KvPass CudaBackend::kv_pass() const {
  KvPass p;
  p.positions = positions_;
  p.table_start = table_start_;
  p.block_ptrs = block_ptrs_;
  p.groups = groups_;
  p.tokens = tokens_;
  p.n_groups = n_groups_;
  p.block_tokens = setup_.kv.block_tokens;
  p.layer_bytes = setup_.kv.layer_bytes();
  p.kv_dtype = setup_.kv.dtype;
  return p;
}

// Operation names in a pass's signature.
enum Op : uint64_t { kEmbed = 1, kNorm, kMatmul, kBias, kRope, kAttention, kSwiglu, kAdd };


void CudaBackend::embed(const MatrixView& table, float* x) {
  if (!record({kEmbed, word(table.data), word(x)})) return;
  flush_pending();
  q8_holds(nullptr, 0);
  ok(cuda::embed(device_matrix(table), ids_, tokens_, x, stream_), "embed");
}

// Whether an op's output of `rows` rows (n values) is read next by integer
// products, and so is also written quantized where it is made (norms,
// attention, SwiGLU); each op adds the alignment its kernel needs.
bool CudaBackend::feeds_integer_products(int64_t rows, int64_t n) const {
  return quantized_ && rows <= kIntegerTokens && n <= q8_values_;
}

Q8Rows CudaBackend::q8_rows(int64_t n) const {
  std::byte* base = q8_buffer_.as<std::byte>();
  return {reinterpret_cast<int8_t*>(base), reinterpret_cast<float2*>(base + align16(static_cast<size_t>(q8_values_))), n,
          base + 2 * q8_values_};
}

// Norm outputs feed matrix products: when those will be integer ones, the
// norm writes the quantized copy too, and the products find it (q8_source_).
//
// The norm of one token's residual stream right after the product that adds
// to it (add() left that product waiting) is done by that product's blocks
// instead (NextNorm, quant_matvec.h): its q8 copy is written, with the
// 1 / rms factor left to the products that read it, and out's floats are
// not (every matrix is an integer product: nothing reads them).
void CudaBackend::rms_norm(const float* x, const VectorView& w, int64_t rows, float* out) {
  if (!record({kNorm, word(x), word(w.data), static_cast<uint64_t>(rows), word(out)})) return;
  const int64_t n = rows * w.size;
  if (accumulate_into_ == x && out != x && rows == 1 && w.size == pending_.front().w.rows && ops_support_vector(w.dtype)) {
    NextNorm next;
    next.w = w.data;
    next.dtype = w.dtype;
    next.q8 = norm_q8_rows(n);
    next.sums = norm_sums_.as<float>();
    flush_pending(MatvecOutput::accumulate, accumulate_into_, &next);
    q8_holds(out, n, true);
    return;
  }
  flush_pending();
  const bool fuse = feeds_integer_products(rows, n) && w.size % 32 == 0;
  const Q8Rows q8 = q8_rows(n);
  ok(cuda::rms_norm(x, device_vector(w), rows, static_cast<float>(setup_.config.rms_eps), out, fuse ? &q8 : nullptr, stream_),
     "rms_norm");
  q8_holds(fuse ? out : nullptr, n);
}

void CudaBackend::q8_holds(const float* x, int64_t n, bool rms_pending) {
  q8_source_ = x;
  q8_source_n_ = n;
  q8_rms_pending_ = x && rms_pending;
}

Q8Rows CudaBackend::norm_q8_rows(int64_t n) const {
  std::byte* base = norm_q8_.as<std::byte>();
  return {reinterpret_cast<int8_t*>(base), reinterpret_cast<float2*>(base + align16(static_cast<size_t>(n))), n};
}

// y^T = W x^T in cuBLAS's column-major terms: W is [w.rows, cols] row-major,
// that is column-major [cols, w.rows] used transposed; x is [rows, cols]
// row-major = column-major [cols, rows]; y [rows, w.rows] row-major =
// column-major [w.rows, rows] with leading dimension w.rows. F16 and BF16
// weights are used as they are (activations converted to their type);
// F32 through SGEMM; quantized ones dequantized to f16 a slice at a time.
void CudaBackend::matmul_tensor_cores(const MatrixView& w, const float* x, int64_t rows, float* y) {
  const float one = 1.0f, zero = 0.0f;
  const int k = static_cast<int>(w.cols), n = static_cast<int>(rows), ldc = static_cast<int>(w.rows);
  if (w.dtype == DType::F32) {  // full precision: the f32 path, no copy
    blas_ok(cublasSgemm(blas_, CUBLAS_OP_T, CUBLAS_OP_N, ldc, n, k, &one, reinterpret_cast<const float*>(w.data), k, x, k,
                        &zero, y, ldc),
            "sgemm");
    return;
  }
  const DType half = w.dtype == DType::BF16 ? DType::BF16 : DType::F16;
  const cudaDataType type = half == DType::BF16 ? CUDA_R_16BF : CUDA_R_16F;
  // Products on one input one after another (q, k, v; gate, up) convert it
  // once: 7 conversions a layer were 2.5 of a BF16 512-token prefill's 28 ms.
  const int64_t n_in = rows * w.cols;
  if (!(op_before_ == kMatmul && x16_source_ == x && x16_n_ == n_in && x16_type_ == half)) {
    ok(to_half(x, n_in, half, x16_.data(), stream_), "to_half");
    x16_source_ = x, x16_n_ = n_in, x16_type_ = half;
  }
  if (w.dtype == DType::F16 || w.dtype == DType::BF16) {
    blas_ok(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, ldc, n, k, &one, w.data, type, k, x16_.data(), type, k, &zero, y,
                         CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "gemm");
    return;
  }
  // (The dequantized weights are f16: the activations too.)
  const int64_t slice = std::max<int64_t>(1, w16_elems_ / w.cols);
  const WeightMatrix dw = {w.dtype, w.data, w.rows, w.cols};
  for (int64_t r0 = 0; r0 < w.rows; r0 += slice) {
    const int64_t m = std::min(slice, w.rows - r0);
    ok(dequantize_f16(dw, r0, m, w16_.data(), stream_), "dequantize_f16");
    blas_ok(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(m), n, k, &one, w16_.data(), CUDA_R_16F, k,
                         x16_.data(), CUDA_R_16F, k, &zero, y + r0, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
            "gemm");
  }
}

// Few-token products on quantized weights, and one-token products on float
// weights, wait one op (pending_) so that what follows can join them in one
// launch: the next products on the same input (q, k and v), the residual
// add of their output (wo, down: the product accumulates into x), or the
// SwiGLU of two of them (gate, up).
void CudaBackend::matmul(const MatrixView& w, const float* x, int64_t rows, float* y) {
  if (!record({kMatmul, word(w.data), word(x), static_cast<uint64_t>(rows), word(y)})) return;
  if (accumulate_into_) flush_pending();  // the product before and its residual add first
  const int64_t n = rows * w.cols;
  const bool integer = rows <= kIntegerTokens && matvec_q8_supports(w.dtype) && n <= q8_values_;
  const bool waits = integer || (rows == 1 && matvec_supports(w.dtype));  // one token of float weights joins the same way
  if (waits && !pending_.empty()) {
    const MatrixView& p = pending_.front().w;
    const bool joins = x == pending_x_ && rows == pending_rows_ && p.dtype == w.dtype && p.cols == w.cols &&
                       pending_.size() < static_cast<size_t>(kMaxMatvecTargets);
    if (!joins) flush_pending();
  }
  if (waits) {
    if (std::any_of(pending_.begin(), pending_.end(), [x](const Pending& p) { return p.y == x; }))
      flush_pending();  // this product reads what a pending one writes
    pending_.push_back({w, y});
    pending_x_ = x;
    pending_rows_ = rows;
    return;
  }
  flush_pending();
  q8_holds(nullptr, 0);
  const int64_t gemm_from = matvec_q8_supports(w.dtype) ? kTensorCoreTokens : kFloatGemmTokens;
  if (rows >= gemm_from && blas_ && w.rows < (int64_t{1} << 31) && w.cols < (int64_t{1} << 31)) {
    matmul_tensor_cores(w, x, rows, y);
    return;
  }
  ok(matmul_generic(device_matrix(w), x, rows, y, stream_), "matmul");
}

// Launches the pending products: `out` store (one launch for all of them),
// accumulate into `y` (one product, the residual add), or swiglu (gate and
// up; the gate's output takes the result). Every output the products were
// asked for is still written. The input is quantized unless the op before
// left it so.
// A residual add that add() left waiting (accumulate_into_) makes this the
// accumulate launch; next (optional): the RMSNorm that follows it.
void CudaBackend::flush_pending(MatvecOutput out, float* y, const NextNorm* next) {
  if (pending_.empty()) return;
  if (accumulate_into_) {
    out = MatvecOutput::accumulate;
    y = accumulate_into_;
    accumulate_into_ = nullptr;
  }
  const MatrixView& w = pending_.front().w;
  MatvecTargets t;
  for (const Pending& p : pending_) t.m[t.count++] = {p.w.data, p.w.rows, p.y};
  if (out == MatvecOutput::accumulate) {  // x += W in, and the product itself where it was asked for
    t.m[0].also = t.m[0].y;
    t.m[0].y = y;
  }
  if (!matvec_q8_supports(w.dtype)) {  // float weights, one token: f32 activations as they are
    ok(matvec(w.dtype, w.cols, t, pending_x_, out, stream_), "matvec");
    q8_holds(nullptr, 0);  // an output may be the floats the q8 copy was made from
    pending_.clear();
    return;
  }
  const int64_t n = pending_rows_ * w.cols;
  Q8Rows q8 = q8_rows(n);
  if (q8_source_ != pending_x_ || q8_source_n_ != n) {
    ok(quantize_q8(pending_x_, q8, stream_), "quantize_q8");
    q8_holds(nullptr, 0);
  } else if (q8_rms_pending_) {  // a norm's copy, its factor still to apply
    q8 = norm_q8_rows(n);
    q8.rms_sums = norm_sums_.as<float>();
    q8.rms_eps = static_cast<float>(setup_.config.rms_eps);
  }
  ok(matvec_q8(w.dtype, w.cols, t, q8, pending_rows_, out, stream_, MatvecKernel::automatic, next), "matvec_q8");
  // The input's quantized copy stays good unless an output overwrote it.
  bool kept = true;
  for (const Pending& p : pending_) kept &= p.y != pending_x_;
  q8_holds(kept && y != pending_x_ ? pending_x_ : nullptr, n, q8_rms_pending_);
  pending_.clear();
}

void CudaBackend::add_bias(float* x, const VectorView& b, int64_t rows) {
  if (!b) return;
  if (!record({kBias, word(x), word(b.data), static_cast<uint64_t>(rows)})) return;
  flush_pending();
  q8_holds(nullptr, 0);
  ok(cuda::add_bias(x, device_vector(b), rows, stream_), "add_bias");
}

void CudaBackend::rope_store_kv(int64_t layer, float* q, float* k, const float* v, const VectorView& q_norm,
                                const VectorView& k_norm) {
  if (!record({kRope, static_cast<uint64_t>(layer), word(q), word(k), word(v), word(q_norm.data), word(k_norm.data)})) return;
  flush_pending();
  q8_holds(nullptr, 0);
  const ModelConfig& c = setup_.config;
  ok(cuda::rope_store_kv(kv_pass(), head_shape(), layer, q, k, v, device_vector(q_norm), device_vector(k_norm),
                         static_cast<float>(c.rms_eps), inv_freq_.as<float>(), setup_.rope_interleaved, stream_),
     "rope_store_kv");
}

// Its output feeds the o projection: written quantized too when that is an
// integer product (as rms_norm does for q/k/v).
void CudaBackend::attention(int64_t layer, const float* q, float* out) {
  if (!record({kAttention, static_cast<uint64_t>(layer), word(q), word(out)})) return;
  flush_pending();
  const HeadShape s = head_shape();
  const int64_t n = tokens_ * s.n_heads * s.head_dim;
  const bool fuse = feeds_integer_products(tokens_, n) && s.head_dim % 32 == 0;
  const Q8Rows q8 = q8_rows(n);
  const AttentionSplits splits{attn_partial_.as<float>(), attn_partial_.size() / sizeof(float)};
  ok(cuda::attention(kv_pass(), s, layer, q, out, fuse ? &q8 : nullptr, attn_positions_ - 1, splits, stream_), "attention");
  q8_holds(fuse ? out : nullptr, n);
}

// Its output feeds the down projection: quantized here when that is an
// integer product (n values of whole 32-value blocks: rows of F). After
// the gate and up products, all three are one launch.
void CudaBackend::swiglu(float* gate, const float* up, int64_t n) {
  if (!record({kSwiglu, word(gate), word(up), static_cast<uint64_t>(n)})) return;
  if (pending_.size() == 2 && pending_[0].y == gate && pending_[1].y == up && n == pending_rows_ * pending_[0].w.rows &&
      pending_[1].w.rows == pending_[0].w.rows) {
    flush_pending(MatvecOutput::swiglu);
    return;
  }
  flush_pending();
  const bool fuse = feeds_integer_products(n / setup_.config.intermediate_size, n) && n % 32 == 0;
  const Q8Rows q8 = q8_rows(n);
  ok(cuda::swiglu(gate, up, n, fuse ? &q8 : nullptr, stream_), "swiglu");
  q8_holds(fuse ? gate : nullptr, n);
}

// After a product into y, x += y is that product accumulating into x. For
// one token, it waits for the next op: when that is the RMSNorm of x, the
// product's blocks do the norm too (rms_norm()).
void CudaBackend::add(float* x, const float* y, int64_t n) {
  if (!record({kAdd, word(x), word(y), static_cast<uint64_t>(n)})) return;
  if (accumulate_into_) flush_pending();
  if (pending_.size() == 1 && pending_[0].y == y && n == pending_rows_ * pending_[0].w.rows && pending_x_ != x) {
    if (pending_rows_ == 1 && pending_[0].w.rows == norm_rows_ && next_norm_supports(pending_[0].w.dtype)) {
      accumulate_into_ = x;
      return;
    }
    flush_pending(MatvecOutput::accumulate, x);  // x += W in: the product adds itself
    return;
  }
  flush_pending();
  q8_holds(nullptr, 0);
  ok(cuda::add(x, y, n, stream_), "add");
}

// Before results go to the host: the pending products launched, the pass's
// graph run.
void CudaBackend::end_pass() {
  flush_pending();
  q8_holds(nullptr, 0);
  finish_pass();
}

void CudaBackend::read(const float* src, int64_t n, float* host) {
  end_pass();
  ok(cudaMemcpyAsync(host, src, static_cast<size_t>(n) * sizeof(float), cudaMemcpyDeviceToHost, stream_), "read");
  ok(cudaStreamSynchronize(stream_), "read");
}

// Greedy decoding: only the rows' token ids cross to the host (4 bytes a
// row instead of the 513 KB of a Llama-3 row of logits).
void CudaBackend::argmax(const float* src, int64_t rows, int64_t n, int32_t* host) {
  end_pass();
  const size_t bytes = static_cast<size_t>(rows) * sizeof(int32_t), at_scratch = (bytes + 15) / 16 * 16,
               need = at_scratch + argmax_scratch_bytes(rows, n);
  if (argmax_ids_.size() < need) argmax_ids_ = device_pool_.allocate(std::max<size_t>(need, 4096), MemoryUse::activations, "greedy tokens");
  ok(argmax_rows(src, rows, n, argmax_ids_.as<int32_t>(), argmax_ids_.as<std::byte>() + at_scratch, need - at_scratch, stream_),
     "argmax");
  ok(cudaMemcpyAsync(host, argmax_ids_.data(), bytes, cudaMemcpyDeviceToHost, stream_), "argmax read");
  ok(cudaStreamSynchronize(stream_), "argmax read");
}

// The pass queued so far starts on the GPU: the host masks constrained rows
// (JSON) beside it.
void CudaBackend::launch() { end_pass(); }

// Only the row's bitset crosses (16 KB for Llama 3), never the row.
void CudaBackend::mask_logits(float* logits, int64_t n, const uint32_t* allowed) {
  if (!logits || !allowed || n <= 0) throw Error("mask_logits: bad arguments");
  end_pass();
  const size_t bytes = static_cast<size_t>((n + 31) / 32) * sizeof(uint32_t);
  if (mask_bits_.size() < bytes) mask_bits_ = device_pool_.allocate(bytes, MemoryUse::activations, "constrained-output mask");
  // Rows follow one another on the stream: the next copy waits for this mask's kernel.
  ok(cudaMemcpyAsync(mask_bits_.data(), allowed, bytes, cudaMemcpyHostToDevice, stream_), "mask copy");
  ok(cuda::mask_logits(logits, n, mask_bits_.as<uint32_t>(), stream_), "mask_logits");
}

// Sampling with top-k: each row's best candidates are selected where the
// logits are and only they come back (k keys of 8 bytes a row).
void CudaBackend::top_k(const float* src, int64_t rows, int64_t n, TopK* out) {
  int k = 1;
  std::vector<float> temperatures(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const TopK& t = out[r];
    check_top_k_request(t);
    k = std::max(k, t.k);  // every row selects the most asked for; each keeps its own k
    temperatures[static_cast<size_t>(r)] = t.temperature;
  }
  end_pass();
  // One buffer: temperatures, then keys, then the selection's scratch.
  auto align256 = [](size_t b) { return (b + 255) / 256 * 256; };
  const size_t keys_bytes = static_cast<size_t>(rows * k) * sizeof(uint64_t), at_keys = align256(static_cast<size_t>(rows) * sizeof(float)),
               at_scratch = at_keys + align256(keys_bytes), need = at_scratch + top_k_scratch_bytes(rows, n, k);
  if (top_k_buffer_.size() < need) top_k_buffer_ = device_pool_.allocate(need, MemoryUse::activations, "sampling candidates");
  auto* base = top_k_buffer_.as<std::byte>();
  float* dtemp = reinterpret_cast<float*>(base);
  auto* keys = reinterpret_cast<uint64_t*>(base + at_keys);
  ok(cudaMemcpyAsync(dtemp, temperatures.data(), temperatures.size() * sizeof(float), cudaMemcpyHostToDevice, stream_), "top_k copy");
  ok(top_k_rows(src, rows, n, dtemp, k, keys, base + at_scratch, top_k_buffer_.size() - at_scratch, stream_), "top_k");
  std::vector<uint64_t> host(static_cast<size_t>(rows * k));
  ok(cudaMemcpyAsync(host.data(), keys, keys_bytes, cudaMemcpyDeviceToHost, stream_), "top_k read");
  ok(cudaStreamSynchronize(stream_), "top_k read");
  for (int64_t r = 0; r < rows; ++r) {
    TopK& t = out[r];
    t.count = 0;
    for (int i = 0; i < t.k; ++i) {
      const uint64_t key = host[static_cast<size_t>(r * k + i)];
      if (key == 0) break;
      t.best[static_cast<size_t>(t.count++)] = {top_k_key_value(key), top_k_key_id(key)};
    }
  }
}

// Sampling from the whole vocabulary: each row's token is drawn where the
// logits are and only it comes back (an 8-byte key a row).
void CudaBackend::draw(const float* src, int64_t rows, int64_t n, TokenDraw* out) {
  std::vector<DrawSettings> settings(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const TokenDraw& d = out[r];
    check_draw_request(d);
    settings[static_cast<size_t>(r)] = {d.temperature, d.top_p, d.min_p, static_cast<uint32_t>(d.key), static_cast<uint32_t>(d.key >> 32)};
  }
  end_pass();
  // One buffer: settings, then keys, then the draw's scratch.
  auto align256 = [](size_t b) { return (b + 255) / 256 * 256; };
  const size_t keys_bytes = static_cast<size_t>(rows) * sizeof(unsigned long long),
               at_keys = align256(settings.size() * sizeof(DrawSettings)), at_scratch = at_keys + align256(keys_bytes),
               need = at_scratch + draw_scratch_bytes(rows, n);
  if (draw_buffer_.size() < need) draw_buffer_ = device_pool_.allocate(need, MemoryUse::activations, "sampling draws");
  auto* base = draw_buffer_.as<std::byte>();
  auto* dsettings = reinterpret_cast<DrawSettings*>(base);
  auto* keys = reinterpret_cast<unsigned long long*>(base + at_keys);
  ok(cudaMemcpyAsync(dsettings, settings.data(), settings.size() * sizeof(DrawSettings), cudaMemcpyHostToDevice, stream_), "draw copy");
  ok(draw_rows(src, rows, n, dsettings, keys, base + at_scratch, draw_buffer_.size() - at_scratch, stream_), "draw");
  std::vector<unsigned long long> host(static_cast<size_t>(rows));
  ok(cudaMemcpyAsync(host.data(), keys, keys_bytes, cudaMemcpyDeviceToHost, stream_), "draw read");
  ok(cudaStreamSynchronize(stream_), "draw read");
  for (int64_t r = 0; r < rows; ++r) out[r].token = draw_token_of(host[static_cast<size_t>(r)]);
}

}  // namespace umi::cuda
