// One MoE layer on one GPU (SPEC section 1), forward and backward, built from the CUDA kernels:
// the same stages as the CPU MoeLayer (src/model/moe.h) -- route (fused router kernel, aux and z
// losses, dispatch layout), dispatch (gather), experts (grouped GEMMs: one cuBLAS call per
// projection for all experts), combine -- plus the shared experts, and the capacity limit of
// moe.capacity_factor (the micro-batch is the routing group, as on the CPU).
//
// Precision: T (float or bf16) is the storage of activations and of the compute copy of the
// weights; router probabilities, gates and losses are fp32, weight gradients fp32 (+=).
// Expert parallelism (parallel.ep > 1, CUDA build with NCCL): with a comm::GpuExchange the layer
// holds L = E/ep experts; after routing its N tokens it sends each token (with its K gates) to
// the EP ranks holding its kept experts (comm/gpu_exchange.h: once per destination node across
// the network, then NCCL inside the node), runs its local experts over the Mr rows it received,
// and combines the gate-weighted outputs back onto the tokens. The backward moves the output
// gradients along the same route (dispatch) and the row and gate gradients back (combine), as
// the CPU MoeLayer does (src/model/moe_parallel.cpp).
//
// Letters as moe.h: N tokens, C d_model, E experts, K top-k, F expert hidden, S shared experts,
// L local experts, Mr rows received from the exchange, A <= N*K (or Mr*K) kept rows of the
// expert-sorted buffer.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/cuda/buffer.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/phase_timer.h"
#include "src/model/moe.h"
#include "src/model/step_phases.h"

namespace sy::comm {
class GpuExchange;
struct GpuRoute;
class NcclComm;
}  // namespace sy::comm

namespace sy {

// Device pointers into the compute copy of the parameters (bias: the fp32 master).
template <class T>
struct CudaMoeWeights {
  const T* router = nullptr;    // [C,E]
  const float* bias = nullptr;  // [E] (may be null = zeros)
  const T* w1 = nullptr;        // [L,C,F]
  const T* w3 = nullptr;        // [L,C,F]
  const T* w2 = nullptr;        // [L,F,C]
  const T* sw1 = nullptr;       // [S,C,F] (null when S == 0)
  const T* sw3 = nullptr;       // [S,C,F]
  const T* sw2 = nullptr;       // [S,F,C]
};

// Device pointers into the fp32 gradient buffer (+=).
struct CudaMoeGrads {
  float* router = nullptr;
  float *w1 = nullptr, *w3 = nullptr, *w2 = nullptr;
  float *sw1 = nullptr, *sw3 = nullptr, *sw2 = nullptr;
};

// The groups a layer works over (CUDA build with NCCL); all null / 1 on one GPU.
struct CudaMoeParallel {
  comm::GpuExchange* exchange = nullptr;  // the EP group's (ep > 1), not owned
  comm::NcclComm* tp = nullptr;           // the tp group (tp > 1), not owned
  int tp_rank = 0, tp_size = 1;
  // moe.overlap_chunks, with an exchange: the tokens are moved in that many chunks, each
  // chunk's dispatch (on the layer's communication stream) overlapping the previous chunk's
  // experts (on the caller's stream); in the backward, chunk c's experts overlap chunk c+1's
  // dispatch and chunk c-1's combine. Every EP rank passes the same count.
  int chunks = 1;
};

// Throws std::logic_error naming what of `dims` and `par` the GPU layer cannot run: the
// constructor's argument checks, host-only (no device call) so that a test without a GPU can
// run them.
void check_cuda_moe_args(const MoeDims& dims, const CudaMoeParallel& par);

template <class T>
class CudaMoeLayer {
 public:
  // dims: this rank's shares (moe_dims(cfg, tp, ep, 1)): L = E/ep local experts with an
  // exchange (all E without), the shared experts' hidden split over tp (Fs = F/tp). With tp > 1
  // (as the CPU MoeLayer) every tp rank routes the whole micro-batch but moves and
  // differentiates only its token slice, and the output and the input gradient are summed over
  // tp; the router gradient is this rank's partial sum (the trainer sums it over tp).
  explicit CudaMoeLayer(const MoeDims& dims, const CudaMoeParallel& par = {});

  // out[N,C] (=) MoE(m[N,C]) for B sequences of T_ tokens. Returns the weighted aux and z terms.
  // Waits for `stream`: the routing counts size the grouped GEMMs on the host.
  MoeLoss forward(T* out, const T* m, int B, int T_, const CudaMoeWeights<T>& w, const LossScale& s,
                  cudaStream_t stream, cublasHandle_t cublas);
  // dm[N,C] (=); weight gradients in g (+=). After the forward of the same micro-batch.
  void backward(T* dm, const CudaMoeGrads& g, const T* dout, const T* m, const CudaMoeWeights<T>& w,
                const LossScale& s, cudaStream_t stream, cublasHandle_t cublas);

  // Rows kept per local expert by the last forward, and its routing counts over this rank's
  // tokens (selected before capacity, kept, dropped; [E] each) in the CPU's MoeStats form.
  const std::vector<int>& expert_counts() const { return rows_; }
  MoeStats stats() const;
  // Whether the grouped GEMM fell back to one call per expert (a cuBLAS without the grouped
  // type combination; see kernels/cuda/gemm.h).
  bool grouped_fallback() const { return gg_.used_fallback(); }
  const cuda::GroupedGemm& grouped_gemm() const { return gg_; }  // which path ran (tests)
  // The last forward's slots, selected and kept, downloaded (tests; waits for the device).
  SlotRouting slot_routing() const;
  // The last forward's top-k of its tokens [N*K] (host: route() brought it back), as
  // MoeLayer::topk().
  const std::vector<int32_t>& topk() const { return h_topk_; }
  // Marks the layer's parts (router, token moves, expert GEMMs, shared experts) on the stream
  // (`bench train`); null: nothing is recorded.
  void set_phase_timer(cuda::PhaseTimer* t) { timer_ = t; }
  // Tests of the chunked exchange path: a busy-wait of this many GPU clock cycles ahead of every
  // move on the communication stream (comm) or every chunk's compute on the caller's (main), so
  // a missing wait between the two streams shows as wrong values instead of a lucky order.
  void set_stream_delays_for_tests(long long comm_cycles, long long main_cycles) {
    comm_delay_ = comm_cycles;
    main_delay_ = main_cycles;
  }

 private:
  void mark(StepPhase p, cudaStream_t stream) {
    if (timer_) timer_->mark(static_cast<int>(p), stream);
  }
  cuda::PhaseTimer* timer_ = nullptr;
  long long comm_delay_ = 0, main_delay_ = 0;  // set_stream_delays_for_tests
  // With an exchange: the tokens [n0, n1) of the micro-batch, moved and computed together
  // (cuda_moe_parallel.cu). Its A expert-sorted rows sit at rows [a0, a0 + A) of xs_, h*_, ys_,
  // dys_ and dxs_.
  struct Chunk {
    int n0 = 0, n1 = 0, Mr = 0, A = 0, a0 = 0;
    std::vector<int> rows;  // [L] rows per local expert
    // The route (shared_ptr: its deleter is bound where it is made, so builds without NCCL
    // never need the definition of comm::GpuRoute).
    std::shared_ptr<comm::GpuRoute> route;
    std::vector<int32_t> h_row_token, h_slot_row;  // the local layout on the host
    std::vector<int64_t> h_slot;
    cuda::PinnedBuffer<int32_t> h_stage32;  // page-locked staging of the uploads below
    cuda::PinnedBuffer<int64_t> h_stage64;
    cuda::DeviceBuffer<T> rows_x, yrows;  // [Mr,C] received rows; weighted outputs / gradients
    cuda::DeviceBuffer<float> rows_g, row_gate, drow_gates;  // [Mr,K], [A], [Mr,K]
    cuda::DeviceBuffer<int32_t> row_token, slot_row;         // [A] row of each, [Mr*K] its row
    cuda::DeviceBuffer<int64_t> slot;                        // [A] slot r*K+j of each row
    const T* x = nullptr;      // the rows: rows_x, or the tokens themselves without an exchange
    const float* g = nullptr;  // their gates [Mr,K]
  };

  // Route the N tokens: logits, probs, top-k, gates, losses and the one-GPU layout (global
  // experts); waits for the stream once for the counts and losses.
  void route(const T* m, int B, int T_, const CudaMoeWeights<T>& w, const LossScale& s,
             cudaStream_t stream, cublasHandle_t cublas);
  // With an exchange or tp > 1 (cuda_moe_parallel.cu): this rank's token slice [n0_, n1_) in
  // chunks: their routes and local layouts (host, collective), then their moves and experts;
  // ytok_ (=) the routed output of the slice's tokens (zeros elsewhere).
  void routed_forward(const T* m, const CudaMoeWeights<T>& w, cudaStream_t stream,
                      cublasHandle_t cublas);
  // dm (+=) the routed part's input gradient, dgates_ (=) the gate gradients (zeros outside the
  // slice); weight gradients (+=).
  void routed_backward(T* dm, const CudaMoeGrads& g, const T* dout, const CudaMoeWeights<T>& w,
                       cudaStream_t stream, cublasHandle_t cublas);
  // Rows [a0, a0 + sum(rows)) of xs (=) rows of src by row_token; h1, h3, h, ys there: the
  // grouped SwiGLU of the L experts.
  void experts_forward(const T* src, const int32_t* row_token, int a0, const std::vector<int>& rows,
                       const CudaMoeWeights<T>& w, cudaStream_t stream, cublasHandle_t cublas);
  // Rows [a0, ...) of dxs from those of dys through the experts; weight gradients (+=).
  void experts_backward(int a0, const std::vector<int>& rows, const CudaMoeGrads& g,
                        const CudaMoeWeights<T>& w, cudaStream_t stream, cublasHandle_t cublas);
  // dh1_, dh3_ hold the experts' backward of `rows` rows (grown, never shrunk).
  void grow_expert_backward_scratch(size_t rows) {
    const size_t AF = rows * static_cast<size_t>(d_.F);
    dh1_.resize(std::max(AF, dh1_.size()));
    dh3_.resize(std::max(AF, dh3_.size()));
  }
  void shared_forward(T* out, const T* m, const CudaMoeWeights<T>& w, cudaStream_t stream,
                      cublasHandle_t cublas);
  void shared_backward(T* dm, const CudaMoeGrads& g, const T* dout, const T* m,
                       const CudaMoeWeights<T>& w, cudaStream_t stream, cublasHandle_t cublas);

  bool moves_rows() const { return exchange_ != nullptr || par_.tp_size > 1; }
  void sum_over_tp(T* x, const char* what, cudaStream_t stream);  // x[N,C] (=) its tp sum

  MoeDims d_;
  CudaMoeParallel par_;
  comm::GpuExchange* exchange_ = nullptr;
  int n0_ = 0, n1_ = 0;        // this rank's token slice
  std::vector<Chunk> chunks_;  // [moe.overlap_chunks] with an exchange, [1] with tp only
  // The communication stream and the two events that order it with the caller's stream
  // (unique_ptr: the layer stays movable).
  std::unique_ptr<cuda::Stream> comm_stream_;
  std::unique_ptr<cuda::Event> main_done_, comm_done_;
  int N_ = 0, NG_ = 0, A_ = 0;
  std::vector<int> rows_;  // rows per local expert (all chunks)
  std::vector<int32_t> h_counts_, h_selected_;
  double h_loss_[2] = {0.0, 0.0};
  // Page-locked landing area of route()'s copies back: [counts E | selected E | topk NK |
  // slot_row NK] and the two losses.
  cuda::PinnedBuffer<int32_t> h_readback_;
  cuda::PinnedBuffer<double> h_loss_readback_;
  cuda::GroupedGemm gg_;

  // Routing (fp32 / int32).
  cuda::DeviceBuffer<float> logits_, probs_, lse_, gates_, grp_frac_, loss_scratch_, row_gate_;
  cuda::DeviceBuffer<int32_t> topk_, selected_, counts_, offsets_, row_token_, slot_row_,
      layout_scratch_;
  cuda::DeviceBuffer<double> loss_;
  // Expert activations (T).
  cuda::DeviceBuffer<T> xs_, h1_, h3_, h_, ys_, sh1_, sh3_, sh_;
  std::vector<int32_t> h_topk_, h_slot_row_, h_kept_;  // [N*K] host copies, kept (-1 dropped)
  cuda::DeviceBuffer<T> ytok_;                         // [N,C] routed output / input gradient
  // Backward scratch.
  cuda::DeviceBuffer<T> dys_, dxs_, dh1_, dh3_, dlogits_t_;
  cuda::DeviceBuffer<float> dgates_, dprobs_, dlse_, dlogits_;
};

}  // namespace sy
