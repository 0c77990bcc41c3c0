// The routed part of the GPU MoE layer across ranks (see cuda_moe.h; the CPU counterpart is
// src/model/moe_parallel.cpp): this rank's token slice (all tokens unless tp > 1) travels in
// moe.overlap_chunks chunks, each with its own route through comm::GpuExchange; with tp > 1 and
// no exchange the slice's tokens are the rows themselves.
//
// Forward, with C chunks (host work first, then two streams):
//   host    route and local layout of every chunk (collective, in chunk order on every rank)
//   comm    dispatch(0)             dispatch(1)             ...  combine(0..C-1)
//   main                experts(0)              experts(1)  ...                   (waits)
// the main stream waits for a chunk's dispatch before its experts, and the communication stream
// for the last experts before the combines; the dispatch of chunk c+1 runs while chunk c's
// experts compute.
//
// Backward, with an exchange (the output gradient dispatched, the row gradients combined back):
//   comm    dispatch(0)  dispatch(1)    dispatch(2) combine(0)    ...  combine(C-1)
//   main                 backward(0)    backward(1)               ...                (waits)
// chunk c's backward waits for its dispatch, the combine of chunk c-1 for chunk c-1's backward:
// while chunk c computes, chunk c+1's gradient arrives and chunk c-1's leaves.
//
// Each chunk's received rows get a local layout (expert-sorted, inside an expert by row, as the
// CPU's build_layout) and go through the one-GPU kernels with rows in place of tokens: gather,
// grouped SwiGLU, combine (gate-weighted sum per row), and their backward.
#include <algorithm>
#include <climits>
#include <span>

#include "kernels/cuda/check.h"
#include "kernels/cuda/moe_ops.h"
#include "kernels/cuda/ops.h"
#include "src/core/error.h"
#include "src/model/cuda_moe.h"

#if defined(SWITCHYARD_HAVE_NCCL)
#include "comm/gpu_exchange.h"
#endif

namespace sy {

namespace {

// set_stream_delays_for_tests: one thread spinning for `cycles` GPU clock cycles.
__global__ void delay_kernel(long long cycles) {
  const long long start = clock64();
  while (clock64() - start < cycles) {
  }
}

void delay(cudaStream_t stream, long long cycles) {
  if (cycles <= 0) return;
  delay_kernel<<<1, 1, 0, stream>>>(cycles);
  SY_CUDA_LAUNCH_CHECK("delay_kernel");
}

}  // namespace

#if defined(SWITCHYARD_HAVE_NCCL)

template <class T>
void CudaMoeLayer<T>::routed_forward(const T* m, const CudaMoeWeights<T>& w, cudaStream_t stream,
                                     cublasHandle_t cublas) {
  const int N = N_, C = d_.C, K = d_.K, F = d_.F, L = d_.local_experts(), NK = N * K;
  const auto nc = static_cast<int>(chunks_.size());
  n0_ = static_cast<int>(static_cast<int64_t>(N) * par_.tp_rank / par_.tp_size);
  n1_ = static_cast<int>(static_cast<int64_t>(N) * (par_.tp_rank + 1) / par_.tp_size);
  const int Ns = n1_ - n0_;
  h_kept_.resize(NK);
  for (int q = 0; q < NK; ++q) h_kept_[q] = h_slot_row_[q] >= 0 ? h_topk_[q] : -1;

  // 1. Host: every chunk's route (collective) and local layout over its rows: the rows the
  // exchange delivers, or without one (tp only) the chunk's tokens, every expert local.
  rows_.assign(static_cast<size_t>(L), 0);
  int a0 = 0;
  for (int c = 0; c < nc; ++c) {
    Chunk& ch = chunks_[static_cast<size_t>(c)];
    ch.n0 = n0_ + static_cast<int>(static_cast<long>(Ns) * c / nc);
    ch.n1 = n0_ + static_cast<int>(static_cast<long>(Ns) * (c + 1) / nc);
    const std::span<const int32_t> kept(h_kept_.data() + static_cast<long>(ch.n0) * K,
                                        static_cast<size_t>(ch.n1 - ch.n0) * K);
    std::span<const int32_t> loc = kept;
    if (exchange_) {
      exchange_->layout(kept, ch.n1 - ch.n0, K, *ch.route, stream);
      loc = ch.route->plan.recv_topk_local;
    }
    SY_CHECK(loc.size() / static_cast<size_t>(K) <= static_cast<size_t>(INT32_MAX),
             "received " << loc.size() / static_cast<size_t>(K) << " rows: past int32");
    ch.Mr = static_cast<int>(loc.size() / static_cast<size_t>(K));
    ch.rows.assign(static_cast<size_t>(L), 0);
    for (int32_t e : loc)
      if (e >= 0) ++ch.rows[static_cast<size_t>(e)];
    std::vector<int> next(static_cast<size_t>(L), 0);
    ch.A = 0;
    for (int e = 0; e < L; ++e) {
      next[static_cast<size_t>(e)] = ch.A;
      ch.A += ch.rows[static_cast<size_t>(e)];
      rows_[static_cast<size_t>(e)] += ch.rows[static_cast<size_t>(e)];
    }
    ch.a0 = a0;
    a0 += ch.A;
    ch.h_row_token.resize(static_cast<size_t>(ch.A));
    ch.h_slot.resize(static_cast<size_t>(ch.A));
    ch.h_slot_row.assign(static_cast<size_t>(ch.Mr) * K, -1);
    for (int r = 0; r < ch.Mr; ++r)
      for (int j = 0; j < K; ++j) {
        const int e = loc[static_cast<size_t>(r) * K + j];
        if (e < 0) continue;
        const int a = next[static_cast<size_t>(e)]++;
        ch.h_row_token[static_cast<size_t>(a)] = r;
        ch.h_slot[static_cast<size_t>(a)] = static_cast<int64_t>(r) * K + j;
        ch.h_slot_row[static_cast<size_t>(r) * K + j] = a;
      }
  }
  A_ = a0;
  // Buffers sized before any chunk's work is queued (a growing buffer is reallocated).
  for (auto* b : {&xs_, &ys_}) b->resize(static_cast<size_t>(A_) * C);
  for (auto* b : {&h1_, &h3_, &h_}) b->resize(static_cast<size_t>(A_) * F);
  ytok_.resize(static_cast<size_t>(N) * C);
  ytok_.fill_bytes_async(0, stream);  // tokens outside the slice: no routed output here
  for (Chunk& ch : chunks_) {
    ch.yrows.resize(static_cast<size_t>(ch.Mr) * C);
    ch.row_gate.resize(static_cast<size_t>(ch.A));
    if (exchange_) {
      ch.rows_x.resize(static_cast<size_t>(ch.Mr) * C);
      ch.rows_g.resize(static_cast<size_t>(ch.Mr) * K);
      ch.x = ch.rows_x.data();
      ch.g = ch.rows_g.data();
    } else {
      ch.x = m + static_cast<long>(ch.n0) * C;
      ch.g = gates_.data() + static_cast<long>(ch.n0) * K;
    }
    ch.h_stage32.resize(ch.h_row_token.size() + ch.h_slot_row.size());
    ch.h_stage64.resize(ch.h_slot.size());
    // a chunk's stage is rewritten only by the next forward, after route() waited for the stream
    int32_t* st32 = cuda::upload_staged(ch.row_token, ch.h_row_token, ch.h_stage32.data(), stream);
    cuda::upload_staged(ch.slot_row, ch.h_slot_row, st32, stream);
    cuda::upload_staged(ch.slot, ch.h_slot, ch.h_stage64.data(), stream);
  }

  if (!exchange_) {  // tp only: the chunk's tokens are its rows, the combine writes them
    for (Chunk& ch : chunks_) {
      cuda::gather_rows(ch.row_gate.data(), ch.g, ch.slot.data(), ch.A, 1, stream);
      experts_forward(ch.x, ch.row_token.data(), ch.a0, ch.rows, w, stream, cublas);
      cuda::combine_forward(ytok_.data() + static_cast<long>(ch.n0) * C,
                            ys_.data() + static_cast<long>(ch.a0) * C, ch.slot_row.data(),
                            ch.row_gate.data(), ch.Mr, K, C, stream);
    }
    return;
  }

  // 2. The moves on the communication stream, the experts on the caller's.
  const cudaStream_t cs = comm_stream_->get();
  main_done_->record(stream);  // m, the gates and the uploads are there
  CUDA_CHECK(cudaStreamWaitEvent(cs, main_done_->get(), 0));
  auto dispatch = [&](Chunk& ch) {
    delay(cs, comm_delay_);
    exchange_->dispatch(*ch.route, m + static_cast<long>(ch.n0) * C, ch.rows_x.data(), C, cs);
    exchange_->dispatch(*ch.route, gates_.data() + static_cast<long>(ch.n0) * K, ch.rows_g.data(),
                        K, cs);
    cuda::gather_rows(ch.row_gate.data(), ch.g, ch.slot.data(), ch.A, 1, cs);
    comm_done_->record(cs);
  };
  dispatch(chunks_[0]);
  for (int c = 0; c < nc; ++c) {
    Chunk& ch = chunks_[static_cast<size_t>(c)];
    CUDA_CHECK(cudaStreamWaitEvent(stream, comm_done_->get(), 0));  // chunk c has arrived
    delay(stream, main_delay_);
    experts_forward(ch.x, ch.row_token.data(), ch.a0, ch.rows, w, stream, cublas);
    ch.yrows.fill_bytes_async(0, stream);
    cuda::combine_forward(ch.yrows.data(), ys_.data() + static_cast<long>(ch.a0) * C,
                          ch.slot_row.data(), ch.row_gate.data(), ch.Mr, K, C, stream);
    if (c + 1 < nc) dispatch(chunks_[static_cast<size_t>(c + 1)]);  // overlaps chunk c's experts
  }
  main_done_->record(stream);
  CUDA_CHECK(cudaStreamWaitEvent(cs, main_done_->get(), 0));
  delay(cs, comm_delay_);
  for (Chunk& ch : chunks_)
    exchange_->combine(*ch.route, ch.yrows.data(), ytok_.data() + static_cast<long>(ch.n0) * C, C,
                       cs);
  comm_done_->record(cs);
  CUDA_CHECK(cudaStreamWaitEvent(stream, comm_done_->get(), 0));
}

template <class T>
void CudaMoeLayer<T>::routed_backward(T* dm, const CudaMoeGrads& g, const T* dout,
                                      const CudaMoeWeights<T>& w, cudaStream_t stream,
                                      cublasHandle_t cublas) {
  const int N = N_, C = d_.C, K = d_.K, nc = static_cast<int>(chunks_.size());
  ytok_.resize(static_cast<size_t>(N) * C);
  ytok_.fill_bytes_async(0, stream);    // the input gradient of the slice's tokens
  dgates_.fill_bytes_async(0, stream);  // only the slice's gates get a gradient here
  // Chunk c's backward: the output gradient of its rows (combine's adjoint is dispatch) through
  // the gates and the experts, then the row gradients (into drows' buffer, now free) and gate
  // gradients of its rows.
  auto chunk_backward = [&](Chunk& ch, const T* drows, float* drow_gates, T* drow_out) {
    const long oc = static_cast<long>(ch.a0) * C;
    cuda::combine_backward(dys_.data() + oc, drow_gates, drows, ys_.data() + oc,
                           ch.row_token.data(), ch.row_gate.data(), ch.slot_row.data(), ch.A, ch.Mr,
                           K, C, stream);
    experts_backward(ch.a0, ch.rows, g, w, stream, cublas);
    if (exchange_ && ch.Mr > 0)
      CUDA_CHECK(cudaMemsetAsync(drow_out, 0, sizeof(T) * ch.Mr * C, stream));
    cuda::gather_rows_backward(drow_out, dxs_.data() + oc, ch.slot_row.data(), ch.Mr, K, C, stream);
  };
  if (!exchange_) {  // tp only: the chunk's tokens are its rows
    for (Chunk& ch : chunks_) {
      const long tc = static_cast<long>(ch.n0) * C;
      chunk_backward(ch, dout + tc, dgates_.data() + static_cast<long>(ch.n0) * K,
                     ytok_.data() + tc);
    }
    cuda::residual_forward(dm, dm, ytok_.data(), static_cast<long>(N) * C, stream);
    return;
  }

  // With the exchange, as the forward: the moves on the communication stream, the experts on the
  // caller's. While chunk c computes, cs dispatches chunk c+1's output gradient and combines
  // chunk c-1's gradients back to their tokens. An exchange call may wait for its transfer on the
  // host (NCCL inside a node, MPI across nodes), so chunk c's kernels are queued before the moves
  // that overlap them; the order itself comes from the events. A chunk's yrows holds its
  // dispatched output gradient, then (after combine_backward has read it) its row gradient;
  // drow_gates its gate gradients; both are read by its combine after main_done_.
  size_t largest = 0;          // rows of the largest chunk: the experts' backward scratch
  for (Chunk& ch : chunks_) {  // sized before the pipeline (a resize waits for the device)
    ch.yrows.resize(static_cast<size_t>(ch.Mr) * C);
    ch.drow_gates.resize(static_cast<size_t>(ch.Mr) * K);
    largest = std::max(largest, static_cast<size_t>(ch.A));
  }
  grow_expert_backward_scratch(largest);
  const cudaStream_t cs = comm_stream_->get();
  auto dispatch = [&](Chunk& ch) {
    delay(cs, comm_delay_);
    exchange_->dispatch(*ch.route, dout + static_cast<long>(ch.n0) * C, ch.yrows.data(), C, cs);
    comm_done_->record(cs);
  };
  auto combine = [&](Chunk& ch) {
    delay(cs, comm_delay_);
    exchange_->combine(*ch.route, ch.yrows.data(), ytok_.data() + static_cast<long>(ch.n0) * C, C,
                       cs);
    exchange_->combine(*ch.route, ch.drow_gates.data(),
                       dgates_.data() + static_cast<long>(ch.n0) * K, K, cs);
  };
  main_done_->record(stream);  // dout and the zeroed ytok_, dgates_ are there
  CUDA_CHECK(cudaStreamWaitEvent(cs, main_done_->get(), 0));
  dispatch(chunks_[0]);
  for (int c = 0; c < nc; ++c) {
    Chunk& ch = chunks_[static_cast<size_t>(c)];
    CUDA_CHECK(cudaStreamWaitEvent(stream, comm_done_->get(), 0));  // chunk c's gradient arrived
    delay(stream, main_delay_);
    chunk_backward(ch, ch.yrows.data(), ch.drow_gates.data(), ch.yrows.data());
    if (c + 1 < nc) dispatch(chunks_[static_cast<size_t>(c + 1)]);  // ahead of combine(c-1)
    if (c > 0) {  // main_done_ still marks chunk c-1's end: cs waits for it, not for chunk c
      CUDA_CHECK(cudaStreamWaitEvent(cs, main_done_->get(), 0));
      combine(chunks_[static_cast<size_t>(c - 1)]);
    }
    main_done_->record(stream);  // chunk c's row and gate gradients are there
  }
  CUDA_CHECK(cudaStreamWaitEvent(cs, main_done_->get(), 0));
  combine(chunks_[static_cast<size_t>(nc - 1)]);
  comm_done_->record(cs);
  CUDA_CHECK(cudaStreamWaitEvent(stream, comm_done_->get(), 0));  // every combine is in
  cuda::residual_forward(dm, dm, ytok_.data(), static_cast<long>(N) * C, stream);
}

#else  // no NCCL: the constructor refuses an exchange, so these are never reached

template <class T>
void CudaMoeLayer<T>::routed_forward(const T*, const CudaMoeWeights<T>&, cudaStream_t,
                                     cublasHandle_t) {
  SY_CHECK(false, "expert or tensor parallelism on the GPU needs the NCCL build");
}
template <class T>
void CudaMoeLayer<T>::routed_backward(T*, const CudaMoeGrads&, const T*, const CudaMoeWeights<T>&,
                                      cudaStream_t, cublasHandle_t) {
  SY_CHECK(false, "expert or tensor parallelism on the GPU needs the NCCL build");
}

#endif

#define SY_INSTANTIATE(T)                                                                         \
  template void CudaMoeLayer<T>::routed_forward(const T*, const CudaMoeWeights<T>&, cudaStream_t, \
                                                cublasHandle_t);                                  \
  template void CudaMoeLayer<T>::routed_backward(                                                 \
      T*, const CudaMoeGrads&, const T*, const CudaMoeWeights<T>&, cudaStream_t, cublasHandle_t);
SY_INSTANTIATE(float)
SY_INSTANTIATE(cuda::bf16)
#undef SY_INSTANTIATE

}  // namespace sy
