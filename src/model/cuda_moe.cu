// The MoE layer on one GPU (see cuda_moe.h); the CPU reference is src/model/moe.cpp.
#include "src/model/cuda_moe.h"

#include <algorithm>
#include <type_traits>

#include "kernels/cuda/check.h"
#include "kernels/cuda/moe_ops.h"
#include "kernels/cuda/ops.h"
#include "src/core/error.h"

#if defined(SWITCHYARD_HAVE_NCCL)
#include "comm/gpu_exchange.h"
#endif

namespace sy {

using cuda::Grad;

void check_cuda_moe_args(const MoeDims& d, const CudaMoeParallel& par) {
  SY_CHECK(d.C > 0 && d.E > 0 && d.F > 0 && d.S >= 0, "bad MoE dims");
  SY_CHECK(d.K >= 1 && d.K <= d.E && d.K <= cuda::kMaxTopK,
           "top_k " << d.K << " not in [1, min(" << d.E << ", " << cuda::kMaxTopK << ")]");
  SY_CHECK(!d.has_capacity || d.capacity_factor > 0, "capacity_factor must be > 0");
  SY_CHECK(d.expert_hidden() == d.F, "the GPU layer does not split the experts (etp = 1)");
  SY_CHECK(par.tp_size >= 1 && par.tp_rank >= 0 && par.tp_rank < par.tp_size,
           "tp rank " << par.tp_rank << " of " << par.tp_size);
  // Only shared experts are split over tp (moe_dims requires F % tp == 0 only for them).
  SY_CHECK(d.S == 0 || d.shared_hidden() * par.tp_size == d.F,
           "shared hidden " << d.shared_hidden() << " is not F/tp for tp " << par.tp_size);
  SY_CHECK(par.chunks >= 1, "moe.overlap_chunks must be >= 1, not " << par.chunks);
}

template <class T>
CudaMoeLayer<T>::CudaMoeLayer(const MoeDims& dims, const CudaMoeParallel& par)
    : d_(dims), par_(par), exchange_(par.exchange) {
  check_cuda_moe_args(d_, par_);
#if defined(SWITCHYARD_HAVE_NCCL)
  SY_CHECK(par_.tp_size == 1 || par_.tp != nullptr,
           "tp " << par_.tp_size << " needs its NCCL comm");
  if (exchange_)
    SY_CHECK(
        exchange_->num_experts() == d_.E && d_.local_experts() * exchange_->num_ranks() == d_.E,
        "exchange over " << exchange_->num_ranks() << " ranks does not hold " << d_.local_experts()
                         << " of " << d_.E << " experts per rank");
  if (moves_rows()) {
    chunks_.resize(static_cast<size_t>(exchange_ ? par_.chunks : 1));
    for (Chunk& c : chunks_) c.route = std::make_shared<comm::GpuRoute>();
    comm_stream_ = std::make_unique<cuda::Stream>();
    main_done_ = std::make_unique<cuda::Event>(cuda::Event::Kind::kOrdering);
    comm_done_ = std::make_unique<cuda::Event>(cuda::Event::Kind::kOrdering);
  }
#else
  SY_CHECK(!moves_rows(), "expert or tensor parallelism on the GPU needs the NCCL build");
#endif
  SY_CHECK(exchange_ || d_.local_experts() == d_.E,
           "local experts " << d_.local_experts() << " of " << d_.E << " need an exchange");
  selected_.resize(d_.E);
  counts_.resize(d_.E);
  offsets_.resize(d_.E + 1);
  loss_.resize(2);
}

template <class T>
void CudaMoeLayer<T>::sum_over_tp(T* x, const char* what, cudaStream_t stream) {
#if defined(SWITCHYARD_HAVE_NCCL)
  if (par_.tp_size == 1) return;
  par_.tp->all_reduce_sum(x, x, static_cast<size_t>(N_) * d_.C, comm::nccl_type<T>(), stream);
  par_.tp->wait(stream, what);
#else
  (void)x;
  (void)what;
  (void)stream;
#endif
}

template <class T>
void CudaMoeLayer<T>::route(const T* m, int B, int T_, const CudaMoeWeights<T>& w,
                            const LossScale& s, cudaStream_t stream, cublasHandle_t cublas) {
  const int N = B * T_, C = d_.C, E = d_.E, K = d_.K, NK = N * K;
  mark(StepPhase::kRouter, stream);
  N_ = N;
  NG_ = d_.aux_scope == AuxScope::kSequence ? T_ : N;
  const int G = N == 0 ? 0 : N / NG_;
  logits_.resize(static_cast<size_t>(N) * E);
  probs_.resize(static_cast<size_t>(N) * E);
  lse_.resize(N);
  topk_.resize(NK);
  gates_.resize(NK);
  grp_frac_.resize(static_cast<size_t>(G) * E + 1);
  loss_scratch_.resize(static_cast<size_t>(cuda::router_losses_scratch(N, E, NG_)));
  row_token_.resize(NK);
  row_gate_.resize(NK);
  slot_row_.resize(NK);
  layout_scratch_.resize(static_cast<size_t>(cuda::moe_layout_scratch(N, E, K)));

  // z[N,E] = m Wr (fp32 out), p, top-k, gates, losses, the layout over the E experts
  cuda::gemm<T, float>(cublas, false, false, N, E, C, 1.0f, m, C, w.router, E, 0.0f, logits_.data(),
                       E);
  cuda::router_forward(probs_.data(), lse_.data(), topk_.data(), gates_.data(), logits_.data(),
                       w.bias, N, E, K, d_.router_rule(), stream);
  cuda::router_losses_forward(loss_.data(), grp_frac_.data(), loss_scratch_.data(), probs_.data(),
                              lse_.data(), topk_.data(), N, E, K, NG_ > 0 ? NG_ : 1, d_.aux_coeff,
                              d_.z_coeff, s.token_weight, s.group_weight, stream,
                              d_.score == Score::kSigmoid);
  const long capacity = d_.has_capacity ? static_cast<long>(moe_expert_capacity(d_, N)) : -1;
  cuda::moe_layout(selected_.data(), counts_.data(), offsets_.data(), row_token_.data(),
                   row_gate_.data(), slot_row_.data(), layout_scratch_.data(), topk_.data(),
                   gates_.data(), probs_.data(), N, E, K, capacity, stream);
  // The counts, the top-k (the trainer's co-activation counts) and, for the exchange, which
  // assignments are kept come back through page-locked memory: asynchronous copies, then the
  // layer's one wait for the stream (the counts size the grouped GEMMs on the host).
  const size_t back = 2 * static_cast<size_t>(E) + static_cast<size_t>(NK) * (moves_rows() ? 2 : 1);
  h_readback_.resize(back);
  h_loss_readback_.resize(2);
  int32_t* rb = h_readback_.data();
  CUDA_CHECK(
      cudaMemcpyAsync(rb, counts_.data(), sizeof(int32_t) * E, cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaMemcpyAsync(rb + E, selected_.data(), sizeof(int32_t) * E, cudaMemcpyDeviceToHost,
                             stream));
  CUDA_CHECK(cudaMemcpyAsync(h_loss_readback_.data(), loss_.data(), 2 * sizeof(double),
                             cudaMemcpyDeviceToHost, stream));
  CUDA_CHECK(cudaMemcpyAsync(rb + 2 * E, topk_.data(), sizeof(int32_t) * NK, cudaMemcpyDeviceToHost,
                             stream));
  if (moves_rows())  // which assignments are kept, for the routes and the local layouts
    CUDA_CHECK(cudaMemcpyAsync(rb + 2 * E + NK, slot_row_.data(), sizeof(int32_t) * NK,
                               cudaMemcpyDeviceToHost, stream));
  mark(StepPhase::kHostWait, stream);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  h_counts_.assign(rb, rb + E);
  h_selected_.assign(rb + E, rb + 2 * E);
  h_loss_[0] = h_loss_readback_.data()[0];
  h_loss_[1] = h_loss_readback_.data()[1];
  h_topk_.assign(rb + 2 * E, rb + 2 * E + NK);
  if (moves_rows()) h_slot_row_.assign(rb + 2 * E + NK, rb + 2 * E + 2 * NK);
}

template <class T>
void CudaMoeLayer<T>::experts_forward(const T* src, const int32_t* row_token, int a0,
                                      const std::vector<int>& rows, const CudaMoeWeights<T>& w,
                                      cudaStream_t stream, cublasHandle_t cublas) {
  const int C = d_.C, F = d_.F;
  int A = 0;
  for (int r : rows) A += r;
  const size_t AF = static_cast<size_t>(A) * F, oc = static_cast<size_t>(a0) * C,
               of = static_cast<size_t>(a0) * F;
  T *xs = xs_.data() + oc, *ys = ys_.data() + oc;
  T *h1 = h1_.data() + of, *h3 = h3_.data() + of, *h = h_.data() + of;
  // dispatch + experts: h1 = xs W1, h3 = xs W3, h = silu(h1) h3, ys = h W2 (per expert)
  mark(StepPhase::kTokenMoves, stream);
  cuda::gather_rows_forward(xs, src, row_token, A, C, stream);
  mark(StepPhase::kExpertGemms, stream);
  gg_.forward(h1, xs, w.w1, rows, C, F, Grad::kAssign, cublas, stream);
  gg_.forward(h3, xs, w.w3, rows, C, F, Grad::kAssign, cublas, stream);
  cuda::swiglu_forward(h, h1, h3, static_cast<long>(AF), stream);
  gg_.forward(ys, h, w.w2, rows, F, C, Grad::kAssign, cublas, stream);
  mark(StepPhase::kTokenMoves, stream);  // the combine follows
}

template <class T>
void CudaMoeLayer<T>::shared_forward(T* out, const T* m, const CudaMoeWeights<T>& w,
                                     cudaStream_t stream, cublasHandle_t cublas) {
  const int N = N_, C = d_.C, F = d_.shared_hidden(), S = d_.S;  // F: the Fs held here
  const size_t NF = static_cast<size_t>(N) * F, CF = static_cast<size_t>(C) * F;
  sh1_.resize(S * NF);
  sh3_.resize(S * NF);
  sh_.resize(S * NF);
  mark(StepPhase::kSharedExperts, stream);
  if (S == 0) {
    CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(T) * N * C, stream));
    return;
  }
  const std::vector<int> all = {N};
  for (int e = 0; e < S; ++e) {
    T* h1 = sh1_.data() + e * NF;
    T* h3 = sh3_.data() + e * NF;
    T* h = sh_.data() + e * NF;
    gg_.forward(h1, m, w.sw1 + e * CF, all, C, F, Grad::kAssign, cublas, stream);
    gg_.forward(h3, m, w.sw3 + e * CF, all, C, F, Grad::kAssign, cublas, stream);
    cuda::swiglu_forward(h, h1, h3, static_cast<long>(NF), stream);
    gg_.forward(out, h, w.sw2 + e * CF, all, F, C, e == 0 ? Grad::kAssign : Grad::kAccumulate,
                cublas, stream);
  }
}

template <class T>
MoeLoss CudaMoeLayer<T>::forward(T* out, const T* m, int B, int T_, const CudaMoeWeights<T>& w,
                                 const LossScale& s, cudaStream_t stream, cublasHandle_t cublas) {
  route(m, B, T_, w, s, stream, cublas);
  const int N = N_, C = d_.C, K = d_.K, F = d_.F;
  if (moves_rows()) {
    routed_forward(m, w, stream, cublas);       // ytok_ (=); the experts on `stream`
    shared_forward(out, m, w, stream, cublas);  // out (=), this rank's Fs share
    cuda::residual_forward(out, out, ytok_.data(), static_cast<long>(N) * C, stream);
    sum_over_tp(out, "the MoE output", stream);
    return MoeLoss{h_loss_[0], h_loss_[1]};
  }
  // one GPU: the rows are the tokens, the layout route()'s
  rows_.assign(h_counts_.begin(), h_counts_.end());
  int A = 0;
  for (int r : rows_) A += r;
  A_ = A;
  for (auto* b : {&xs_, &ys_}) b->resize(static_cast<size_t>(A) * C);
  for (auto* b : {&h1_, &h3_, &h_}) b->resize(static_cast<size_t>(A) * F);
  experts_forward(m, row_token_.data(), 0, rows_, w, stream, cublas);
  shared_forward(out, m, w, stream, cublas);  // out (=)
  mark(StepPhase::kTokenMoves, stream);
  cuda::combine_forward(out, ys_.data(), slot_row_.data(), row_gate_.data(), N, K, C, stream);
  return MoeLoss{h_loss_[0], h_loss_[1]};
}

template <class T>
void CudaMoeLayer<T>::experts_backward(int a0, const std::vector<int>& rows, const CudaMoeGrads& g,
                                       const CudaMoeWeights<T>& w, cudaStream_t stream,
                                       cublasHandle_t cublas) {
  const int C = d_.C, F = d_.F;
  int A = 0;
  for (int r : rows) A += r;
  const size_t AF = static_cast<size_t>(A) * F, oc = static_cast<size_t>(a0) * C,
               of = static_cast<size_t>(a0) * F;
  const T *xs = xs_.data() + oc, *dys = dys_.data() + oc;
  const T *h1 = h1_.data() + of, *h3 = h3_.data() + of, *h = h_.data() + of;
  T* dxs = dxs_.data() + oc;
  grow_expert_backward_scratch(static_cast<size_t>(A));
  // dh = dys W2^T, dW2 += h^T dys, SwiGLU back, dxs = dh1 W1^T + dh3 W3^T, dW1, dW3
  mark(StepPhase::kExpertGemms, stream);
  gg_.backward_dx(dh1_.data(), dys, w.w2, rows, F, C, Grad::kAssign, cublas, stream);
  gg_.backward_dw(g.w2, h, dys, rows, F, C, cublas, stream);
  cuda::swiglu_backward(dh1_.data(), dh3_.data(), dh1_.data(), h1, h3, static_cast<long>(AF),
                        stream);
  gg_.backward_dx(dxs, dh1_.data(), w.w1, rows, C, F, Grad::kAssign, cublas, stream);
  gg_.backward_dx(dxs, dh3_.data(), w.w3, rows, C, F, Grad::kAccumulate, cublas, stream);
  gg_.backward_dw(g.w1, xs, dh1_.data(), rows, C, F, cublas, stream);
  gg_.backward_dw(g.w3, xs, dh3_.data(), rows, C, F, cublas, stream);
  mark(StepPhase::kTokenMoves, stream);  // the rows go back to their tokens
}

template <class T>
void CudaMoeLayer<T>::shared_backward(T* dm, const CudaMoeGrads& g, const T* dout, const T* m,
                                      const CudaMoeWeights<T>& w, cudaStream_t stream,
                                      cublasHandle_t cublas) {
  const int N = N_, C = d_.C, F = d_.shared_hidden(), S = d_.S;  // F: the Fs held here
  const size_t NF = static_cast<size_t>(N) * F, CF = static_cast<size_t>(C) * F;
  mark(StepPhase::kSharedExperts, stream);
  if (S == 0) {
    CUDA_CHECK(cudaMemsetAsync(dm, 0, sizeof(T) * N * C, stream));
    return;
  }
  dh1_.resize(std::max(NF, dh1_.size()));
  dh3_.resize(std::max(NF, dh3_.size()));
  const std::vector<int> all = {N};
  for (int e = 0; e < S; ++e) {
    const T* h1 = sh1_.data() + e * NF;
    const T* h3 = sh3_.data() + e * NF;
    const T* h = sh_.data() + e * NF;
    gg_.backward_dx(dh1_.data(), dout, w.sw2 + e * CF, all, F, C, Grad::kAssign, cublas, stream);
    gg_.backward_dw(g.sw2 + e * CF, h, dout, all, F, C, cublas, stream);
    cuda::swiglu_backward(dh1_.data(), dh3_.data(), dh1_.data(), h1, h3, static_cast<long>(NF),
                          stream);
    gg_.backward_dx(dm, dh1_.data(), w.sw1 + e * CF, all, C, F,
                    e == 0 ? Grad::kAssign : Grad::kAccumulate, cublas, stream);
    gg_.backward_dx(dm, dh3_.data(), w.sw3 + e * CF, all, C, F, Grad::kAccumulate, cublas, stream);
    gg_.backward_dw(g.sw1 + e * CF, m, dh1_.data(), all, C, F, cublas, stream);
    gg_.backward_dw(g.sw3 + e * CF, m, dh3_.data(), all, C, F, cublas, stream);
  }
}

template <class T>
void CudaMoeLayer<T>::backward(T* dm, const CudaMoeGrads& g, const T* dout, const T* m,
                               const CudaMoeWeights<T>& w, const LossScale& s, cudaStream_t stream,
                               cublasHandle_t cublas) {
  const int N = N_, C = d_.C, E = d_.E, K = d_.K, A = A_;
  dgates_.resize(static_cast<size_t>(N) * K);
  dprobs_.resize(static_cast<size_t>(N) * E);
  dlogits_.resize(static_cast<size_t>(N) * E);
  dlse_.resize(N);

  shared_backward(dm, g, dout, m, w, stream, cublas);  // dm (=)
  dys_.resize(static_cast<size_t>(A) * C);
  dxs_.resize(static_cast<size_t>(A) * C);
  int n0 = 0, Ns = N;  // the tokens whose router terms this rank differentiates
  if (moves_rows()) {
    routed_backward(dm, g, dout, w, stream, cublas);  // dm (+=), dgates_ (=)
    n0 = n0_;
    Ns = n1_ - n0_;
  } else {
    // combine: dys = gate * dout rows; dgates per slot; experts; dispatch: dm += token rows
    mark(StepPhase::kTokenMoves, stream);
    cuda::combine_backward(dys_.data(), dgates_.data(), dout, ys_.data(), row_token_.data(),
                           row_gate_.data(), slot_row_.data(), A, N, K, C, stream);
    experts_backward(0, rows_, g, w, stream, cublas);
    cuda::gather_rows_backward(dm, dxs_.data(), slot_row_.data(), N, K, C, stream);
  }

  // route: gates, aux and z losses -> dlogits -> dm += dlogits Wr^T, dWr += m^T dlogits
  mark(StepPhase::kRouter, stream);
  const bool sigmoid = d_.score == Score::kSigmoid;  // no z-loss: no lse gradient
  cuda::router_losses_backward(dprobs_.data(), dlse_.data(), grp_frac_.data(), lse_.data(), N, E,
                               NG_ > 0 ? NG_ : 1, d_.aux_coeff, d_.z_coeff, s.token_weight,
                               s.group_weight, stream, sigmoid ? probs_.data() : nullptr);
  const long nE = static_cast<long>(n0) * E, nK = static_cast<long>(n0) * K;
  cuda::router_backward(dlogits_.data() + nE, dgates_.data() + nK, dprobs_.data() + nE,
                        sigmoid ? nullptr : dlse_.data() + n0, probs_.data() + nE,
                        topk_.data() + nK, Ns, E, K, d_.router_rule(), stream);
  const T* dz = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    dz = dlogits_.data() + nE;
  } else {  // the GEMM wants both operands in T
    dlogits_t_.resize(static_cast<size_t>(N) * E);
    cuda::convert(dlogits_t_.data() + nE, dlogits_.data() + nE, static_cast<long>(Ns) * E, stream);
    dz = dlogits_t_.data() + nE;
  }
  const long nC = static_cast<long>(n0) * C;
  cuda::matmul_backward<T>(dm + nC, g.router, dz, m + nC, w.router, Ns, C, E, cublas,
                           Grad::kAccumulate);
  sum_over_tp(dm, "the MoE input gradient", stream);
}

template <class T>
SlotRouting CudaMoeLayer<T>::slot_routing() const {
  SlotRouting r{topk_.download(), slot_row_.download()};
  for (size_t q = 0; q < r.kept.size(); ++q) r.kept[q] = r.kept[q] >= 0 ? r.selected[q] : -1;
  return r;
}

template <class T>
MoeStats CudaMoeLayer<T>::stats() const {
  MoeStats st;
  st.selected.assign(h_selected_.begin(), h_selected_.end());
  st.kept.assign(h_counts_.begin(), h_counts_.end());
  st.dropped = 0;
  for (size_t e = 0; e < st.selected.size(); ++e) st.dropped += st.selected[e] - st.kept[e];
  return st;
}

template class CudaMoeLayer<float>;
template class CudaMoeLayer<cuda::bf16>;

}  // namespace sy
