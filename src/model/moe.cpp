// MoE layer: dims, the routing stage (router, top-k, capacity, dispatch layout, aux and z
// losses), dispatch/combine, and the composed forward/backward. The expert stages are in
// moe_experts.cpp. See moe.h for the shape letters.
#include "src/model/moe.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/moe_ops.h"
#include "src/core/error.h"

namespace sy {

using cpu::Grad;

namespace {
// Grow-only resize: once a buffer has held the largest micro-batch, later calls never allocate.
template <class V>
void grow(V& v, long n) {
  if (static_cast<long>(v.size()) < n) v.resize(static_cast<size_t>(n));
}
}  // namespace

MoeDims moe_dims(const Config& cfg) {
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
  return d;
}

int64_t moe_expert_capacity(const MoeDims& d, int num_tokens) {
  if (!d.has_capacity) return num_tokens;
  // A config's decimal factor (1.1, 1.25) is rarely exact in binary: c*N*K/E can land a few ulps
  // above the integer the user meant (1.1*10/11 = 1.0000000000000002), and ceil would then give
  // one more slot than the decimal arithmetic. Snap values within 1e-9 relative to the integer.
  const double x = d.capacity_factor * num_tokens * d.K / d.E;
  const double r = std::round(x);
  if (std::fabs(x - r) <= 1e-9 * std::max(1.0, std::fabs(x))) return static_cast<int64_t>(r);
  return static_cast<int64_t>(std::ceil(x));
}

template <class T>
MoeLayer<T>::MoeLayer(const MoeDims& dims) : d_(dims) {
  SY_CHECK(d_.C > 0 && d_.E > 0 && d_.F > 0 && d_.S >= 0, "bad MoE dims");
  SY_CHECK(d_.K >= 1 && d_.K <= d_.E, "top_k " << d_.K << " not in [1, " << d_.E << "]");
  SY_CHECK(!d_.has_capacity || d_.capacity_factor > 0, "capacity_factor must be > 0");
  grow(sel_off_, d_.E + 1);
  grow(counts_, d_.E);
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
                      N, E, K, d_.norm_topk);

  MoeLoss loss;
  // z-loss: z_coeff * sum_n lse_n^2, weighted per token (the global mean over the batch).
  double zsum = 0.0;
  for (int n = 0; n < N; ++n) zsum += static_cast<double>(lse_[n]) * static_cast<double>(lse_[n]);
  loss.z = d_.z_coeff * zsum * s.token_weight;

  // aux per balance group: aux_G = coeff * E * sum_i f_i P_i, f_i counted before capacity.
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
      for (int n = g * NG; n < (g + 1) * NG; ++n) P += static_cast<double>(probs_[n * E + i]);
      aux_g += f * (P / NG);
    }
    aux += d_.aux_coeff * E * aux_g;
  }
  loss.aux = aux * s.group_weight;

  build_layout(stats);
  return loss;
}

// Capacity and the dispatch layout. The slots n*K+j of every expert are listed in token order;
// an expert over capacity keeps its `cap` slots of highest p (ties: lower token index), which
// are then put back in token order so rows inside an expert are always sorted by token.
template <class T>
void MoeLayer<T>::build_layout(MoeStats* stats) {
  const int N = N_, E = d_.E, K = d_.K, NK = N * K;
  grow(sel_, NK);
  grow(row_token_, NK);
  grow(row_slot_, NK);
  grow(row_gate_, NK);

  std::fill(sel_off_.begin(), sel_off_.begin() + E + 1, 0);
  for (int q = 0; q < NK; ++q) ++sel_off_[topk_[q] + 1];
  for (int e = 0; e < E; ++e) sel_off_[e + 1] += sel_off_[e];
  std::fill(counts_.begin(), counts_.begin() + E, 0);  // used as fill cursors first
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
  int A = 0;
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
      std::sort(list, list + n_sel, [&](int32_t a, int32_t b) {
        const double pa = p_of(a), pb = p_of(b);
        return pa != pb ? pa > pb : a < b;
      });
      std::sort(list, list + keep);
    }
    counts_[e] = keep;
    for (int r = 0; r < keep; ++r, ++A) {
      row_slot_[A] = list[r];
      row_token_[A] = list[r] / K;
      row_gate_[A] = gates_[list[r]];
    }
    if (stats) {
      stats->selected[e] = n_sel;
      stats->kept[e] = keep;
      stats->dropped += n_sel - keep;
    }
  }
  A_ = A;
}

template <class T>
void MoeLayer<T>::dispatch(T* xs, const T* m) const {
  cpu::gather_rows_forward(xs, m, row_token_.data(), A_, d_.C);
}

template <class T>
void MoeLayer<T>::combine(T* out, const T* ys) const {
  cpu::scatter_rows_forward(out, ys, row_token_.data(), row_gate_.data(), A_, d_.C);
}

template <class T>
void MoeLayer<T>::combine_backward(T* dys, const T* dout, const T* ys) {
  const int NK = N_ * d_.K;
  grow(drow_gate_, NK);
  grow(dgates_, NK);
  cpu::scatter_rows_backward(dys, drow_gate_.data(), dout, ys, row_token_.data(), row_gate_.data(),
                             A_, d_.C);
  // A dropped assignment contributed nothing, so its gate gets no gradient.
  std::fill(dgates_.begin(), dgates_.begin() + NK, T(0));
  for (int r = 0; r < A_; ++r) dgates_[row_slot_[r]] = drow_gate_[r];
}

template <class T>
void MoeLayer<T>::dispatch_backward(T* dm, const T* dxs) const {
  cpu::gather_rows_backward(dm, dxs, row_token_.data(), A_, d_.C);
}

// aux = group_weight * coeff * E * sum_G sum_i f_i P_i with P_i = (1/N_G) sum_{n in G} p_{n,i}:
//   d/dp_{n,i} = group_weight * coeff * E * f_i(G(n)) / N_G      (f is a count: no gradient)
// z = token_weight * z_coeff * sum_n lse_n^2:   d/dlse_n = 2 token_weight z_coeff lse_n
template <class T>
void MoeLayer<T>::route_backward(T* dm, T* drouter, const T* m, const T* router,
                                 const LossScale& s) {
  const int N = N_, C = d_.C, E = d_.E, K = d_.K;
  const bool per_seq = d_.aux_scope == AuxScope::kSequence;
  const int NG = per_seq ? seq_len_ : N;
  grow(dprobs_, static_cast<long>(N) * E);
  grow(dlogits_, static_cast<long>(N) * E);
  grow(dlse_, N);
  const double aux_scale = N == 0 ? 0.0 : s.group_weight * d_.aux_coeff * E / NG;
  for (int n = 0; n < N; ++n) {
    const double* f = grp_frac_.data() + static_cast<long>(n / NG) * E;
    for (int i = 0; i < E; ++i)
      dprobs_[static_cast<long>(n) * E + i] = static_cast<T>(aux_scale * f[i]);
    dlse_[n] = static_cast<T>(2.0 * s.token_weight * d_.z_coeff * static_cast<double>(lse_[n]));
  }
  cpu::router_backward(dlogits_.data(), dgates_.data(), dprobs_.data(), dlse_.data(), probs_.data(),
                       topk_.data(), N, E, K, d_.norm_topk);
  cpu::matmul_backward(dm, drouter, dlogits_.data(), m, router, N, C, E, Grad::kAccumulate);
}

template <class T>
MoeLoss MoeLayer<T>::forward(T* out, const T* m, int B, int T_, const MoeWeights<T>& w,
                             const LossScale& s, MoeStats* stats) {
  const MoeLoss loss = route(m, B, T_, w.router, w.bias, s, stats);
  shared_forward(out, m, w);
  const long rows_cap = static_cast<long>(N_) * d_.K * d_.C;
  grow(xs_, rows_cap);
  grow(ys_, rows_cap);
  dispatch(xs_.data(), m);
  experts_forward(ys_.data(), xs_.data(), counts_.data(), d_.E, w.w1, w.w3, w.w2);
  combine(out, ys_.data());
  return loss;
}

template <class T>
void MoeLayer<T>::backward(T* dm, const MoeWeights<T>& g, const T* dout, const T* m,
                           const MoeWeights<T>& w, const LossScale& s) {
  const long rows_cap = static_cast<long>(N_) * d_.K * d_.C;
  grow(dys_, rows_cap);
  grow(dxs_, rows_cap);
  shared_backward(dm, g, dout, m, w);
  combine_backward(dys_.data(), dout, ys_.data());
  experts_backward(dxs_.data(), g.w1, g.w3, g.w2, dys_.data(), xs_.data(), counts_.data(), d_.E,
                   w.w1, w.w3, w.w2);
  dispatch_backward(dm, dxs_.data());
  route_backward(dm, g.router, m, w.router, s);
}

template class MoeLayer<float>;
template class MoeLayer<double>;

}  // namespace sy
