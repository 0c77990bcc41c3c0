// MoE layer: dims, the routing stage (router, top-k, capacity, dispatch layout, aux and z
// losses), dispatch/combine, and the composed forward/backward. The expert stages are in
// moe_experts.cpp. See moe.h for the shape letters.
#include "src/model/moe.h"
#include "src/model/grow.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "comm/mpi.h"
#include "kernels/cpu/moe_ops.h"
#include "src/core/error.h"

namespace sy {

using cpu::Grad;

MoeDims moe_dims(const Config& cfg, int tp, int ep, int etp) {
  MoeDims d;
  d.C = static_cast<int>(cfg.model.d_model);
  d.E = static_cast<int>(cfg.moe.num_experts);
  d.K = static_cast<int>(cfg.moe.top_k);
  d.F = static_cast<int>(cfg.moe.ffn_hidden);
  d.S = static_cast<int>(cfg.moe.shared_experts);
  d.norm_topk = cfg.moe.norm_topk;
  d.has_capacity = cfg.moe.capacity_factor.has_value();
  d.capacity_factor = cfg.moe.capacity_factor.value_or(0.0);
  d.aux_coeff = cfg.moe.aux_loss_coeff;
  d.z_coeff = cfg.moe.z_loss_coeff;
  d.aux_scope = cfg.moe.aux_loss_scope;
  d.score = cfg.moe.score;
  d.gate_scale = cfg.moe.gate_scale;
  // `nodes` on one EP rank: the experts span one node, so one group.
  SY_CHECK(!cfg.moe.route_groups.nodes || ep == 1,
           "moe.route_groups: nodes is not resolved for the layout (resolve_route_groups)");
  d.route_groups = cfg.moe.route_groups.nodes ? 1 : static_cast<int>(cfg.moe.route_groups.count);
  d.route_groups_topk = static_cast<int>(cfg.moe.route_groups_topk);
  SY_CHECK(
      tp > 0 && ep > 0 && etp > 0 && d.E % ep == 0 && d.F % etp == 0 && (d.S == 0 || d.F % tp == 0),
      "layout tp=" << tp << " ep=" << ep << " etp=" << etp << " does not divide the layer");
  d.L = d.E / ep;
  d.Fl = d.F / etp;
  d.Fs = d.F / tp;
  return d;
}

int64_t moe_expert_capacity(const MoeDims& d, int num_tokens) {
  if (!d.has_capacity) return num_tokens;
  return moe_capacity(d.capacity_factor, num_tokens, d.K, d.E);
}

template <class T>
MoeLoss MoeLayer<T>::route(const T* m, int B, int T_, const T* router, const T* bias,
                           const LossScale& s, MoeStats* stats) {
  SY_CHECK(B >= 0 && T_ > 0, "bad micro-batch shape B=" << B << " T=" << T_);
  const int N = B * T_, C = d_.C, E = d_.E, K = d_.K;
  seq_len_ = T_;
  N_ = N;
  grow(logits_, static_cast<long>(N) * E);
  grow(probs_, static_cast<long>(N) * E);
  grow(lse_, N);
  grow(topk_, static_cast<long>(N) * K);
  grow(gates_, static_cast<long>(N) * K);

  cpu::matmul_forward(logits_.data(), m, router, N, C, E);
  cpu::router_forward(probs_.data(), lse_.data(), topk_.data(), gates_.data(), logits_.data(), bias,
                      N, E, K, d_.router_rule());

  MoeLoss loss;
  // z-loss (softmax scores only): z_coeff * sum_n lse_n^2, weighted per token (the global mean
  // over the batch).
  const bool sigmoid = d_.score == Score::kSigmoid;
  if (!sigmoid) {
    double zsum = 0.0;
    for (int n = 0; n < N; ++n) zsum += static_cast<double>(lse_[n]) * static_cast<double>(lse_[n]);
    loss.z = d_.z_coeff * zsum * s.token_weight;
  }

  // aux per balance group: aux_G = coeff * E * sum_i f_i P_i, f_i counted before capacity, P_i
  // the group's mean of p_i, or under sigmoid of p_i / S_n with S_n = sum_j p_{n,j}.
  grow(score_sum_, N);
  for (int n = 0; n < N; ++n) {
    double sum = 0.0;
    for (int i = 0; sigmoid && i < E; ++i)
      sum += static_cast<double>(probs_[static_cast<long>(n) * E + i]);
    score_sum_[n] = sigmoid ? sum : 1.0;
  }
  const bool per_seq = d_.aux_scope == AuxScope::kSequence;
  const int G = N == 0 ? 0 : (per_seq ? B : 1), NG = per_seq ? T_ : N;
  grow(grp_frac_, static_cast<long>(G) * E);
  std::fill(grp_frac_.begin(), grp_frac_.begin() + static_cast<long>(G) * E, 0.0);
  for (int n = 0; n < N; ++n)
    for (int j = 0; j < K; ++j) grp_frac_[static_cast<long>(n / NG) * E + topk_[n * K + j]] += 1.0;
  double aux = 0.0;
  for (int g = 0; g < G; ++g) {
    double aux_g = 0.0;
    for (int i = 0; i < E; ++i) {
      double& f = grp_frac_[static_cast<long>(g) * E + i];
      f /= static_cast<double>(NG) * K;
      double P = 0.0;
      for (int n = g * NG; n < (g + 1) * NG; ++n)
        P += static_cast<double>(probs_[n * E + i]) / score_sum_[n];
      aux_g += f * (P / NG);
    }
    aux += d_.aux_coeff * E * aux_g;
  }
  loss.aux = aux * s.group_weight;

  apply_capacity(stats);
  // This rank's token slice: with tp > 1 each tp rank moves and differentiates its share of
  // the (replicated) micro-batch, so each token's routed work is done once.
  const int tp = par_.tp ? par_.tp->size() : 1, tp_rank = par_.tp ? par_.tp->rank() : 0;
  n0_ = static_cast<int>(static_cast<int64_t>(N) * tp_rank / tp);
  n1_ = static_cast<int>(static_cast<int64_t>(N) * (tp_rank + 1) / tp);
  if (!moves_rows()) build_layout(kept_.data(), gates_.data(), N);
  return loss;
}

// Capacity. The slots n*K+j of every expert are listed in token order; an expert over capacity
// keeps its `cap` slots of highest p (ties: lower token index).
template <class T>
void MoeLayer<T>::apply_capacity(MoeStats* stats) {
  const int N = N_, E = d_.E, K = d_.K, NK = N * K;
  grow(sel_, NK);
  grow(kept_, NK);
  grow(sel_off_, E + 1);
  grow(counts_, E);

  std::fill(sel_off_.begin(), sel_off_.begin() + E + 1, 0);
  for (int q = 0; q < NK; ++q) ++sel_off_[topk_[q] + 1];
  for (int e = 0; e < E; ++e) sel_off_[e + 1] += sel_off_[e];
  std::fill(counts_.begin(), counts_.begin() + E, 0);  // fill cursors
  for (int q = 0; q < NK; ++q) {
    const int e = topk_[q];
    sel_[sel_off_[e] + counts_[e]++] = q;
  }

  const int64_t cap = moe_expert_capacity(d_, N);
  if (stats) {
    stats->selected.assign(static_cast<size_t>(E), 0);
    stats->kept.assign(static_cast<size_t>(E), 0);
    stats->dropped = 0;
  }
  std::fill(kept_.begin(), kept_.begin() + NK, -1);
  for (int e = 0; e < E; ++e) {
    int32_t* list = sel_.data() + sel_off_[e];
    const int n_sel = sel_off_[e + 1] - sel_off_[e];
    int keep = n_sel;
    if (n_sel > cap) {
      keep = static_cast<int>(cap);
      // NaN probabilities (a diverged step) sort last instead of breaking the strict weak order.
      auto p_of = [&](int32_t q) {
        const double p = static_cast<double>(probs_[static_cast<long>(q / K) * E + e]);
        return std::isnan(p) ? -std::numeric_limits<double>::infinity() : p;
      };
      std::partial_sort(list, list + keep, list + n_sel, [&](int32_t a, int32_t b) {
        const double pa = p_of(a), pb = p_of(b);
        return pa != pb ? pa > pb : a < b;
      });
    }
    for (int r = 0; r < keep; ++r) kept_[list[r]] = e;
    if (stats) {
      stats->selected[e] = n_sel;
      stats->kept[e] = keep;
      stats->dropped += n_sel - keep;
    }
  }
}

// The local experts' assignments among M rows, expert-sorted and inside an expert by row.
template <class T>
void MoeLayer<T>::build_layout(const int32_t* row_experts, const T* row_gates, int M) {
  const int L = d_.local_experts(), K = d_.K;
  const long MK = static_cast<long>(M) * K;
  grow(counts_, L);
  grow(sel_off_, L + 1);
  std::fill(counts_.begin(), counts_.begin() + L, 0);
  for (long q = 0; q < MK; ++q)
    if (row_experts[q] >= 0) ++counts_[row_experts[q]];
  sel_off_[0] = 0;
  for (int l = 0; l < L; ++l) sel_off_[l + 1] = sel_off_[l] + counts_[l];
  const int A = sel_off_[L];
  grow(row_of_, A);
  grow(slot_of_, A);
  grow(row_gate_, A);
  for (long q = 0; q < MK; ++q) {
    const int l = row_experts[q];
    if (l < 0) continue;
    const int a = sel_off_[l]++;
    row_of_[a] = static_cast<int32_t>(q / K);
    slot_of_[a] = static_cast<int32_t>(q);
    row_gate_[a] = row_gates[q];
  }
  M_ = M;
  A_ = A;
}

template <class T>
void MoeLayer<T>::dispatch(T* xs, const T* rows) const {
  cpu::gather_rows_forward(xs, rows, row_of_.data(), A_, d_.C);
}

template <class T>
void MoeLayer<T>::combine(T* out, const T* ys) const {
  cpu::scatter_rows_forward(out, ys, row_of_.data(), row_gate_.data(), A_, d_.C);
}

// The one-rank form: rows are tokens, so each assignment's gate gradient lands on its token's
// slot directly.
template <class T>
void MoeLayer<T>::combine_backward(T* dys, const T* dout, const T* ys) {
  const int NK = N_ * d_.K;
  grow(drow_gate_, A_);
  grow(dgates_, NK);
  cpu::scatter_rows_backward(dys, drow_gate_.data(), dout, ys, row_of_.data(), row_gate_.data(), A_,
                             d_.C);
  // A dropped assignment contributed nothing, so its gate gets no gradient.
  std::fill(dgates_.begin(), dgates_.begin() + NK, T(0));
  for (int a = 0; a < A_; ++a) dgates_[slot_of_[a]] = drow_gate_[a];
}

template <class T>
void MoeLayer<T>::dispatch_backward(T* drows, const T* dxs) const {
  cpu::gather_rows_backward(drows, dxs, row_of_.data(), A_, d_.C);
}

// aux = group_weight * coeff * E * sum_G sum_i f_i P_i with P_i = (1/N_G) sum_{n in G} q_{n,i}
// (f is a count: no gradient) and a = group_weight * coeff * E / N_G:
//   softmax, q = p:              d/dp_{n,k} = a f_k
//   sigmoid, q_i = p_i / S_n:    d/dp_{n,k} = a (f_k - sum_i f_i q_{n,i}) / S_n
// z = token_weight * z_coeff * sum_n lse_n^2:   d/dlse_n = 2 token_weight z_coeff lse_n (softmax)
template <class T>
void MoeLayer<T>::route_backward(T* dm, T* drouter, const T* m, const T* router,
                                 const LossScale& s) {
  const int N = N_, C = d_.C, E = d_.E, K = d_.K;
  const int n0 = n0_, Ns = n1_ - n0_;  // this rank's tokens: each token's terms counted once
  const bool per_seq = d_.aux_scope == AuxScope::kSequence;
  const int NG = per_seq ? seq_len_ : N;
  grow(dprobs_, static_cast<long>(N) * E);
  grow(dlogits_, static_cast<long>(N) * E);
  grow(dlse_, N);
  const double aux_scale = N == 0 ? 0.0 : s.group_weight * d_.aux_coeff * E / NG;
  const bool sigmoid = d_.score == Score::kSigmoid;
  for (int n = n0; n < n0 + Ns; ++n) {
    const double* f = grp_frac_.data() + static_cast<long>(n / NG) * E;
    const T* p = probs_.data() + static_cast<long>(n) * E;
    double fq = 0.0;  // sum_i f_i q_{n,i} (sigmoid)
    for (int i = 0; sigmoid && i < E; ++i) fq += f[i] * static_cast<double>(p[i]) / score_sum_[n];
    for (int i = 0; i < E; ++i)
      dprobs_[static_cast<long>(n) * E + i] =
          static_cast<T>(sigmoid ? aux_scale * (f[i] - fq) / score_sum_[n] : aux_scale * f[i]);
    dlse_[n] = static_cast<T>(2.0 * s.token_weight * d_.z_coeff * static_cast<double>(lse_[n]));
  }
  const long nE = static_cast<long>(n0) * E, nK = static_cast<long>(n0) * K;
  cpu::router_backward(dlogits_.data() + nE, dgates_.data() + nK, dprobs_.data() + nE,
                       sigmoid ? nullptr : dlse_.data() + n0, probs_.data() + nE, topk_.data() + nK,
                       Ns, E, K, d_.router_rule());
  cpu::matmul_backward(dm + static_cast<long>(n0) * C, drouter, dlogits_.data() + nE,
                       m + static_cast<long>(n0) * C, router, Ns, C, E, Grad::kAccumulate);
}

template <class T>
MoeLoss MoeLayer<T>::forward(T* out, const T* m, int B, int T_, const MoeWeights<T>& w,
                             const LossScale& s, MoeStats* stats) {
  const MoeLoss loss = route(m, B, T_, w.router, w.bias, s, stats);
  shared_forward(out, m, w);
  routed_forward(out, m, w);
  return loss;
}

template <class T>
void MoeLayer<T>::backward(T* dm, const MoeWeights<T>& g, const T* dout, const T* m,
                           const MoeWeights<T>& w, const LossScale& s) {
  grow(dgates_, static_cast<long>(N_) * d_.K);
  std::fill(dgates_.begin(), dgates_.begin() + static_cast<long>(N_) * d_.K, T(0));
  shared_backward(dm, g, dout, m, w);
  routed_backward(dm, g, dout, w);
  route_backward(dm, g.router, m, w.router, s);
  sum_over_tp(dm, "MoE input gradient");
}

template class MoeLayer<float>;
template class MoeLayer<double>;

}  // namespace sy
