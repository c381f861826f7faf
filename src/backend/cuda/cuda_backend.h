// The CUDA backend: the forward pass's ops as kernels on one GPU.
//
// Memory: the Pool of device memory it is given (make_device_memory; the
// models on one GPU may share it, and so its limit) holds the uploaded weights,
// the KV blocks (same KvBlockPool and block tables as the CPU) and the
// activations. Weights are uploaded once, from the mapped file through a ring
// of three pinned staging buffers, so that reading the file (page faults
// into the mapping) and the copies to the device overlap; the ring is freed
// once they are up.
//
// Few-token passes (decode) are recorded as CUDA graphs, one per pass shape
// (begin_pass to the first read), and later passes of that shape replay
// the graph without enqueuing anything: the GPU runs the ~330 kernels of a
// step back to back, and the CPU's cost per step is copying the pass's
// token tables. Products wait one op so that the residual add or SwiGLU
// after them, or sibling products on one input, join their launch.
//
// Matrix products: Q8_0/Q4_0/K-quant ones of up to kIntegerTokens (64)
// tokens (decode, batches of streams) multiply q8 activations as integers
// (dp4a for 1-3 tokens, the int8 tensor cores from 4); 16-bit and f32
// ones of one token through the float matvec, of 2-8 through the generic
// product (f32 activations), of 9 or more through cuBLAS. Longer passes
// (prefill) on quantized weights go through cuBLAS too: F16/BF16 weights as
// they are, quantized ones dequantized to f16 a slice at a time. Passes of
// up to 64 tokens are graphs.
// One-token float products join the same way (q/k/v one launch, SwiGLU and
// the residual add inside the products).
//
// Kernels are launched as programmatic dependents of the one before
// (launch.cuh): the next kernel's blocks start, and load their weights,
// while the small kernels between the products run.
//
// One token's RMSNorm after a residual add is done by the product that adds
// (quant_matvec.h, NextNorm) when every product is an integer one.
//
// A q8_0 KV cache: the CUDA-core attention kernel reads it, the tensor-core
// prefill kernel dequantizes its tiles to f16; the warp-a-head decode kernel
// reads f16 alone.
//
// Not yet: kernels of their own for Q4_1/Q5_0/Q5_1 weights (rewritten on
// upload), sampling with penalties or logprobs on the device, int8 tensor
// cores for prefill (see README's status table).
#pragma once

#include <initializer_list>
#include <memory>
#include <unordered_map>
#include <vector>

#include <cublas_v2.h>

#include "backend/backend.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/quant_matvec.h"

namespace umi::cuda {

class CudaBackend final : public Backend {
 public:
  // `host` counts the pinned staging and pass buffers; setup.device_memory
  // (required) holds everything on the device. Throws Error when no device
  // can be used.
  CudaBackend(Pool& host, const BackendSetup& setup);
  ~CudaBackend() override;

  Device device() const override { return Device::cuda; }
  Pool& memory() override { return device_pool_; }
  KvBlockPool& kv_pool() override { return *kv_pool_; }
  int64_t threads() const override { return 1; }
  void bind_weights(ModelWeights& w, uint64_t mapped_bytes) override;
  Buffer scratch(int64_t count, const char* what) override;

  void begin_pass(const PassTokens& pass) override;
  void embed(const MatrixView& table, float* x) override;
  void rms_norm(const float* x, const VectorView& w, int64_t rows, float* out) override;
  void matmul(const MatrixView& w, const float* x, int64_t rows, float* y) override;
  void add_bias(float* x, const VectorView& b, int64_t rows) override;
  void rope_store_kv(int64_t layer, float* q, float* k, const float* v, const VectorView& q_norm,
                     const VectorView& k_norm) override;
  void attention(int64_t layer, const float* q, float* out) override;
  void swiglu(float* gate, const float* up, int64_t n) override;
  void add(float* x, const float* y, int64_t n) override;
  void read(const float* src, int64_t n, float* host) override;
  void argmax(const float* src, int64_t rows, int64_t n, int32_t* host) override;
  void top_k(const float* src, int64_t rows, int64_t n, TopK* out) override;
  void draw(const float* src, int64_t rows, int64_t n, TokenDraw* out) override;
  void launch() override;
  void mask_logits(float* logits, int64_t n, const uint32_t* allowed) override;

 private:
  // Copies a tensor to the device (once per host address); `split`: a
  // Q8_0/Q4_0/Q6_K matrix's type, turned into the split layout on the way.
  const std::byte* upload(const std::byte* host, size_t bytes, DType split);
  KvPass kv_pass() const;
  HeadShape head_shape() const;
  Q8Rows q8_rows(int64_t n) const;
  bool feeds_integer_products(int64_t rows, int64_t n) const;
  void finish_pass();  // runs the pass's recorded graph (captured or replayed)
  void end_pass();     // flush_pending() and finish_pass(): before a read
  bool record(std::initializer_list<uint64_t> call);
  void flush_pending(MatvecOutput out = MatvecOutput::store, float* y = nullptr, const NextNorm* next = nullptr);
  void q8_holds(const float* x, int64_t n, bool rms_pending = false);
  Q8Rows norm_q8_rows(int64_t n) const;
  void matmul_tensor_cores(const MatrixView& w, const float* x, int64_t rows, float* y);

  Pool& host_;
  BackendSetup setup_;
  Pool& device_pool_;  // setup.device_memory
  std::unique_ptr<KvBlockPool> kv_pool_;
  cudaStream_t stream_ = nullptr;
  // Weight copies on the device, by the host address they came from (a tied
  // output matrix is the embedding: uploaded once).
  std::vector<Buffer> weights_;
  std::unordered_map<const std::byte*, const std::byte*> uploaded_;
  // The upload ring (pinned host buffers), held only while bind_weights()
  // uploads: 96 MiB of pinned memory a resident model would otherwise keep.
  struct StagingRing;
  std::unique_ptr<StagingRing> ring_;
  Buffer split_staging_;    // device, during upload: chunks of Q8_0/Q4_0/Q6_K blocks before splitting
  double upload_seconds_ = 0;
  // This pass's tokens as the kernels see them: ids, positions, block table
  // starts and block pointers, staged in pinned memory, copied in one go.
  Buffer inv_freq_;    // device [head_dim / 2]
  Buffer pass_device_;  // device
  void* pass_host_ = nullptr;  // pinned
  size_t pass_bytes_ = 0;
  int32_t* ids_ = nullptr;
  int64_t* positions_ = nullptr;
  int32_t* table_start_ = nullptr;
  void** block_ptrs_ = nullptr;
  int32_t* groups_ = nullptr;
  int64_t tokens_ = 0, n_groups_ = 0;
  int64_t group_tokens_ = 1;  // tokens one attention block takes together
  int64_t attn_positions_ = 32;  // the pass's positions, rounded up to a power of two
  Buffer attn_partial_;  // device: split attention's partial softmax states
  Buffer argmax_ids_;    // device: greedy tokens of a pass, [max batch]
  Buffer top_k_buffer_;  // device: sampling's temperatures, candidate keys and selection scratch
  Buffer draw_buffer_;   // device: whole-row draws' settings, token keys and scratch (a weight per logit)
  Buffer mask_bits_;     // device: a constrained row's allowed tokens, a bit each
  // Prefill: weights dequantized to f16 a slice of rows at a time, the
  // activations to f16, and a cuBLAS GEMM on the tensor cores (f32 sums).
  cublasHandle_t blas_ = nullptr;
  Buffer blas_workspace_, w16_, x16_;
  const float* x16_source_ = nullptr;  // what x16_ holds converted (n values of x16_type_)
  int64_t x16_n_ = 0;
  DType x16_type_ = DType::F32;
  int64_t w16_elems_ = 0;
  // Few-token products on quantized weights multiply q8 activations: one
  // buffer, and which float input it holds now (q8_source_, q8_source_n_
  // values; any op that may write that input forgets it).
  bool quantized_ = false;  // any matrix has an integer product (matvec_q8_supports)
  int64_t widest_ = 0;      // the most columns of any matrix
  Buffer q8_buffer_;
  int64_t q8_values_ = 0;
  const float* q8_source_ = nullptr;
  int64_t q8_source_n_ = 0;
  bool q8_rms_pending_ = false;  // the source is a norm's output in norm_q8_, its factor not applied
  // The RMSNorms done by the products that write their input (rms_norm()):
  // one token's row of norm_rows_ (the hidden size; 0: never) as q8 with
  // its per-block sums of squares.
  int64_t norm_rows_ = 0;
  Buffer norm_q8_, norm_sums_;
  float* accumulate_into_ = nullptr;  // add() waiting for the next op (a product accumulating here)
  // Pending few-token integer products on one input (see matmul()).
  struct Pending {
    MatrixView w;
    float* y;
  };
  std::vector<Pending> pending_;
  const float* pending_x_ = nullptr;
  int64_t pending_rows_ = 0;
  // CUDA graphs of few-token passes, by pass shape (runs and attention
  // splits), with the signature of the calls they were recorded from.
  enum class Mode { eager, capture, replay };
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    uint64_t signature = 0;
  };
  Mode mode_ = Mode::eager;
  uint64_t pass_key_ = 0, signature_ = 0;
  uint64_t op_ = 0, op_before_ = 0;  // the op being recorded and the one before it (record())
  std::unordered_map<uint64_t, Graph> graphs_;
};

}  // namespace umi::cuda
