// The routed part of the MoE layer across ranks: this rank's token slice travels (with its K
// gates) to the expert-parallel ranks holding its experts, is all-gathered over the
// expert-tensor-parallel group, runs through the local experts, and comes back the same way;
// the backward moves the gradients along the reverse routes (see moe.h). On one rank the rows are
// the tokens themselves and nothing moves.
#include <algorithm>
#include <span>

#include "comm/alltoall.h"
#include "comm/collectives.h"
#include "kernels/cpu/moe_ops.h"
#include "src/core/error.h"
#include "src/model/grow.h"
#include "src/model/moe.h"

namespace sy {

namespace {
int size_of(const comm::Comm* c) {
  return c ? c->size() : 1;
}
}  // namespace

template <class T>
MoeLayer<T>::MoeLayer(const MoeDims& dims, const MoeParallel& par) : d_(dims), par_(par) {
  SY_CHECK(d_.C > 0 && d_.E > 0 && d_.F > 0 && d_.S >= 0, "bad MoE dims");
  SY_CHECK(d_.K >= 1 && d_.K <= d_.E, "top_k " << d_.K << " not in [1, " << d_.E << "]");
  SY_CHECK(!d_.has_capacity || d_.capacity_factor > 0, "capacity_factor must be > 0");
  SY_CHECK(d_.router_rule().valid_for(d_.E, d_.K),
           "routing of " << d_.E << " experts top-" << d_.K << " in " << d_.route_groups
                         << " groups, " << d_.route_groups_topk << " kept, gate scale "
                         << d_.gate_scale);
  SY_CHECK(d_.score == Score::kSoftmax || d_.z_coeff == 0, "no z-loss under sigmoid scores");
  SY_CHECK(par_.exchange || d_.local_experts() == d_.E,
           "local experts " << d_.local_experts() << " of " << d_.E << " need an exchange");
  if (par_.exchange) {
    SY_CHECK(par_.exchange->num_experts() == d_.E &&
                 d_.local_experts() * par_.exchange->num_ranks() == d_.E,
             "exchange over " << par_.exchange->num_ranks() << " ranks does not hold "
                              << d_.local_experts() << " of " << d_.E << " experts per rank");
    handle_ = std::make_shared<comm::ExchangeHandle>();
  }
  grow(sel_off_, d_.E + 1);
  grow(counts_, d_.E);
}

template <class T>
void MoeLayer<T>::set_expert_slots(std::vector<int32_t> slots) {
  SY_CHECK(slots.empty() || (par_.exchange && static_cast<int>(slots.size()) == d_.E),
           "expert slots need an exchange and one slot per expert (" << slots.size() << " of "
                                                                     << d_.E << ")");
  std::vector<bool> seen(slots.size(), false);
  for (int32_t s : slots) {
    SY_CHECK(s >= 0 && s < d_.E && !seen[static_cast<size_t>(s)],
             "expert slots are no permutation");
    seen[static_cast<size_t>(s)] = true;
  }
  expert_slot_ = std::move(slots);
}

template <class T>
bool MoeLayer<T>::moves_rows() const {
  return par_.exchange || size_of(par_.tp) > 1 || size_of(par_.etp) > 1;
}

// Every etp rank contributed etp_rows_[r] rows; this rank's come first in v.
template <class T>
template <class V>
void MoeLayer<T>::etp_gather(V& v, int width, int M, const char* what) {
  using E = typename V::value_type;
  std::vector<int64_t> counts(etp_rows_.size());
  for (size_t r = 0; r < counts.size(); ++r) counts[r] = etp_rows_[r] * width;
  const auto mine = static_cast<size_t>(counts[static_cast<size_t>(par_.etp->rank())]);
  V all(static_cast<size_t>(M) * static_cast<size_t>(width));
  comm::allgatherv(std::span<const E>(v.data(), mine), std::span<E>(all),
                   std::span<const int64_t>(counts), *par_.etp, par_.watchdog, what);
  v.swap(all);
}

template <class T>
void MoeLayer<T>::etp_sum_to_owner(std::vector<T>& v, int width, int M, const char* what) {
  std::vector<int64_t> counts(etp_rows_.size());
  for (size_t r = 0; r < counts.size(); ++r) counts[r] = etp_rows_[r] * width;
  const auto mine = static_cast<size_t>(counts[static_cast<size_t>(par_.etp->rank())]);
  etp_scratch_.resize(mine);
  comm::reduce_scatter_v(std::span<const T>(v.data(), static_cast<size_t>(M) * width),
                         std::span<T>(etp_scratch_), std::span<const int64_t>(counts), *par_.etp,
                         par_.watchdog, what);
  std::copy(etp_scratch_.begin(), etp_scratch_.end(), v.begin());
}

template <class T>
void MoeLayer<T>::routed_forward(T* out, const T* m, const MoeWeights<T>& w) {
  const int C = d_.C, K = d_.K, L = d_.local_experts();
  if (!moves_rows()) {  // one rank: rows are the tokens, the layout is route()'s
    const long AC = static_cast<long>(A_) * C;
    grow(xs_, AC);
    grow(ys_, AC);
    dispatch(xs_.data(), m);
    experts_forward(ys_.data(), xs_.data(), counts_.data(), L, w.w1, w.w3, w.w2);
    combine(out, ys_.data());
    return;
  }
  const int n0 = n0_, Ns = n1_ - n0_, W = C + K;
  const T* slice_x = m + static_cast<long>(n0) * C;
  const T* slice_g = gates_.data() + static_cast<long>(n0) * K;
  const int32_t* slice_e = kept_.data() + static_cast<long>(n0) * K;

  // 1. This rank's rows: [Mo, C] inputs, [Mo, K] gates and local experts.
  int Mo = Ns;
  if (par_.exchange) {
    grow(send_, static_cast<long>(Ns) * W);
    for (int i = 0; i < Ns; ++i) {
      std::copy(slice_x + static_cast<long>(i) * C, slice_x + static_cast<long>(i + 1) * C,
                send_.data() + static_cast<long>(i) * W);
      std::copy(slice_g + static_cast<long>(i) * K, slice_g + static_cast<long>(i + 1) * K,
                send_.data() + static_cast<long>(i) * W + C);
    }
    comm::ExchangeHandle& h = *handle_;
    const int32_t* route_e = slice_e;  // the exchange routes by slot (set_expert_slots)
    if (!expert_slot_.empty()) {
      grow(slot_e_, static_cast<long>(Ns) * K);
      for (long i = 0; i < static_cast<long>(Ns) * K; ++i)
        slot_e_[static_cast<size_t>(i)] =
            slice_e[i] < 0 ? -1 : expert_slot_[static_cast<size_t>(slice_e[i])];
      route_e = slot_e_.data();
    }
    par_.exchange->layout(std::span<const int32_t>(route_e, static_cast<size_t>(Ns) * K), Ns, K, h);
    Mo = static_cast<int>(h.num_recv);
    grow(recv_, static_cast<long>(Mo) * W);
    par_.exchange->dispatch(h, std::span<const T>(send_.data(), static_cast<size_t>(Ns) * W),
                            std::span<T>(recv_.data(), static_cast<size_t>(Mo) * W), W);
    grow(rows_x_, static_cast<long>(Mo) * C);
    grow(rows_g_, static_cast<long>(Mo) * K);
    grow(rows_e_, static_cast<long>(Mo) * K);
    for (int r = 0; r < Mo; ++r) {
      const T* row = recv_.data() + static_cast<long>(r) * W;
      std::copy(row, row + C, rows_x_.data() + static_cast<long>(r) * C);
      std::copy(row + C, row + W, rows_g_.data() + static_cast<long>(r) * K);
    }
    std::copy(h.recv_topk_local.begin(), h.recv_topk_local.begin() + static_cast<long>(Mo) * K,
              rows_e_.begin());
  } else {  // ep = 1: every expert is local, global ids are local ids
    grow(rows_x_, static_cast<long>(Ns) * C);
    grow(rows_g_, static_cast<long>(Ns) * K);
    grow(rows_e_, static_cast<long>(Ns) * K);
    std::copy(slice_x, slice_x + static_cast<long>(Ns) * C, rows_x_.begin());
    std::copy(slice_g, slice_g + static_cast<long>(Ns) * K, rows_g_.begin());
    std::copy(slice_e, slice_e + static_cast<long>(Ns) * K, rows_e_.begin());
  }

  // 2. etp > 1: every etp rank runs its F share of the local experts on the union of the rows.
  int M = Mo;
  const int etp = size_of(par_.etp);
  if (etp > 1) {
    etp_rows_.assign(static_cast<size_t>(etp), 0);
    etp_rows_[static_cast<size_t>(par_.etp->rank())] = Mo;
    comm::allreduce_sum(std::span<int64_t>(etp_rows_), *par_.etp, par_.watchdog, "etp row counts");
    M = 0;
    for (int64_t n : etp_rows_) M += static_cast<int>(n);
    etp_gather(rows_x_, C, M, "etp rows");
    etp_gather(rows_g_, K, M, "etp gates");
    etp_gather(rows_e_, K, M, "etp experts");
  }

  // 3. The local experts over the M rows; yrows (=) their gate-weighted outputs per row.
  build_layout(rows_e_.data(), rows_g_.data(), M);
  const long AC = static_cast<long>(A_) * C;
  grow(xs_, AC);
  grow(ys_, AC);
  dispatch(xs_.data(), rows_x_.data());
  experts_forward(ys_.data(), xs_.data(), counts_.data(), L, w.w1, w.w3, w.w2);
  grow(yrows_, static_cast<long>(M) * C);
  std::fill(yrows_.begin(), yrows_.begin() + static_cast<long>(M) * C, T(0));
  combine(yrows_.data(), ys_.data());

  // 4. Back: etp partial sums to their rows' owner, then over ep to the tokens.
  if (etp > 1) etp_sum_to_owner(yrows_, C, M, "etp expert outputs");
  const T* ytok = yrows_.data();
  if (par_.exchange) {
    grow(send_, static_cast<long>(Ns) * C);
    par_.exchange->combine(*handle_, std::span<const T>(yrows_.data(), static_cast<size_t>(Mo) * C),
                           std::span<T>(send_.data(), static_cast<size_t>(Ns) * C), C);
    ytok = send_.data();
  }
  T* out_slice = out + static_cast<long>(n0) * C;
  for (long i = 0; i < static_cast<long>(Ns) * C; ++i) out_slice[i] += ytok[i];
  // The shared experts' F shares and the token slices add up over tp.
  sum_over_tp(out, "MoE output");
}

template <class T>
void MoeLayer<T>::sum_over_tp(T* x, const char* what) {
  if (size_of(par_.tp) > 1)
    comm::allreduce_sum(std::span<T>(x, static_cast<size_t>(N_) * d_.C), *par_.tp, par_.watchdog,
                        what);
}

template <class T>
void MoeLayer<T>::routed_backward(T* dm, const MoeWeights<T>& g, const T* dout,
                                  const MoeWeights<T>& w) {
  const int C = d_.C, K = d_.K, L = d_.local_experts();
  const long AC = static_cast<long>(A_) * C;
  grow(dys_, AC);
  grow(dxs_, AC);
  if (!moves_rows()) {  // one rank: straight back onto the tokens and their gate slots
    combine_backward(dys_.data(), dout, ys_.data());
    experts_backward(dxs_.data(), g.w1, g.w3, g.w2, dys_.data(), xs_.data(), counts_.data(), L,
                     w.w1, w.w3, w.w2);
    dispatch_backward(dm, dxs_.data());
    return;
  }
  const int n0 = n0_, Ns = n1_ - n0_, W = C + K, M = M_;
  const T* dslice = dout + static_cast<long>(n0) * C;
  const int etp = size_of(par_.etp);

  // 1. The output gradient of this rank's rows (combine's adjoint is dispatch), then of all M.
  int Mo = Ns;
  grow(rows_x_, static_cast<long>(M) * C);  // reused: d(weighted output) per row
  if (par_.exchange) {
    Mo = static_cast<int>(handle_->num_recv);
    par_.exchange->dispatch(*handle_, std::span<const T>(dslice, static_cast<size_t>(Ns) * C),
                            std::span<T>(rows_x_.data(), static_cast<size_t>(Mo) * C), C);
  } else {
    std::copy(dslice, dslice + static_cast<long>(Ns) * C, rows_x_.begin());
  }
  if (etp > 1) etp_gather(rows_x_, C, M, "etp output gradients");

  // 2. Through the gates and the experts; each assignment's input gradient goes to its row,
  // its gate gradient to its row's slot column.
  grow(drow_gate_, A_);
  cpu::scatter_rows_backward(dys_.data(), drow_gate_.data(), rows_x_.data(), ys_.data(),
                             row_of_.data(), row_gate_.data(), A_, C);
  experts_backward(dxs_.data(), g.w1, g.w3, g.w2, dys_.data(), xs_.data(), counts_.data(), L, w.w1,
                   w.w3, w.w2);
  grow(yrows_, static_cast<long>(M) * W);
  std::fill(yrows_.begin(), yrows_.begin() + static_cast<long>(M) * W, T(0));
  for (int a = 0; a < A_; ++a) {
    T* row = yrows_.data() + static_cast<long>(row_of_[a]) * W;
    const T* dx = dxs_.data() + static_cast<long>(a) * C;
    for (int c = 0; c < C; ++c) row[c] += dx[c];
    row[C + slot_of_[a] % K] = drow_gate_[a];
  }

  // 3. Back to the tokens: etp partials to the rows' owner, then the sum over ep ranks.
  if (etp > 1) etp_sum_to_owner(yrows_, W, M, "etp row gradients");
  const T* dtok = yrows_.data();
  if (par_.exchange) {
    grow(send_, static_cast<long>(Ns) * W);
    par_.exchange->combine(*handle_, std::span<const T>(yrows_.data(), static_cast<size_t>(Mo) * W),
                           std::span<T>(send_.data(), static_cast<size_t>(Ns) * W), W);
    dtok = send_.data();
  }
  for (int i = 0; i < Ns; ++i) {
    const T* src = dtok + static_cast<long>(i) * W;
    T* dst = dm + static_cast<long>(n0 + i) * C;
    for (int c = 0; c < C; ++c) dst[c] += src[c];
    T* dg = dgates_.data() + static_cast<long>(n0 + i) * K;
    for (int j = 0; j < K; ++j)
      if (kept_[static_cast<size_t>(n0 + i) * K + j] >= 0) dg[j] = src[C + j];
  }
}

#define SY_INSTANTIATE(T)                                                        \
  template MoeLayer<T>::MoeLayer(const MoeDims&, const MoeParallel&);            \
  template void MoeLayer<T>::set_expert_slots(std::vector<int32_t>);             \
  template bool MoeLayer<T>::moves_rows() const;                                 \
  template void MoeLayer<T>::routed_forward(T*, const T*, const MoeWeights<T>&); \
  template void MoeLayer<T>::routed_backward(T*, const MoeWeights<T>&, const T*, \
                                             const MoeWeights<T>&);              \
  template void MoeLayer<T>::sum_over_tp(T*, const char*);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
#undef SY_INSTANTIATE

}  // namespace sy
