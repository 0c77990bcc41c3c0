// Shared helpers of the MoE layer tests (test_moe*.cpp): parameter sets with MoeWeights views,
// random initialisation, and a naive per-token reference of the MoE forward written with plain
// loops, independent of the layer's staged implementation.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "common/grad_check.h"
#include "src/model/moe.h"

namespace sy::test {

// One MoE layer's parameters (or gradients) as separate vectors, SPEC section 5 shapes.
template <class T>
struct MoeParams {
  std::vector<T> router, bias, w1, w3, w2, sw1, sw3, sw2;

  MoeParams() = default;
  explicit MoeParams(const MoeDims& d) { resize(d); }
  void resize(const MoeDims& d) {
    const size_t C = d.C, E = d.E, F = d.F, S = d.S;
    router.assign(C * E, T(0));
    bias.assign(E, T(0));
    w1.assign(E * C * F, T(0));
    w3.assign(E * C * F, T(0));
    w2.assign(E * F * C, T(0));
    sw1.assign(S * C * F, T(0));
    sw3.assign(S * C * F, T(0));
    sw2.assign(S * F * C, T(0));
  }
  MoeWeights<T> view() {
    auto p = [](std::vector<T>& v) { return v.empty() ? nullptr : v.data(); };
    return {p(router), p(bias), p(w1), p(w3), p(w2), p(sw1), p(sw3), p(sw2)};
  }
  // The differentiable tensors with their names (bias excluded: it gets no gradient).
  std::vector<std::pair<const char*, std::vector<T>*>> tensors() {
    return {{"router", &router}, {"w1", &w1},   {"w3", &w3},  {"w2", &w2},
            {"sw1", &sw1},       {"sw3", &sw3}, {"sw2", &sw2}};
  }
  template <class U>
  MoeParams<U> convert_to() const {
    MoeParams<U> o;
    o.router = convert<U>(router);
    o.bias = convert<U>(bias);
    o.w1 = convert<U>(w1);
    o.w3 = convert<U>(w3);
    o.w2 = convert<U>(w2);
    o.sw1 = convert<U>(sw1);
    o.sw3 = convert<U>(sw3);
    o.sw2 = convert<U>(sw2);
    return o;
  }
};

// Router weights large enough that the probabilities are well separated (no near-ties for the
// finite differences to cross), expert weights of order 1/sqrt(C).
inline MoeParams<double> random_params(const MoeDims& d, std::mt19937& rng,
                                       double router_scale = 1.0) {
  MoeParams<double> p(d);
  const double ws = 1.0 / std::sqrt(static_cast<double>(d.C));
  p.router = random_vector(rng, p.router.size(), -router_scale, router_scale);
  for (auto* v : {&p.w1, &p.w3, &p.w2, &p.sw1, &p.sw3, &p.sw2})
    *v = random_vector(rng, v->size(), -ws, ws);
  return p;
}

// SwiGLU of one token through one expert with plain loops: x[C], w1/w3 [C,F], w2 [F,C];
// out[C] (+=) scale * SwiGLU(x).
inline void naive_swiglu_add(double* out, const double* x, const double* w1, const double* w3,
                             const double* w2, int C, int F, double scale) {
  for (int c = 0; c < C; ++c) {
    double acc = 0.0;
    for (int f = 0; f < F; ++f) {
      double a = 0.0, b = 0.0;
      for (int i = 0; i < C; ++i) {
        a += x[i] * w1[i * F + f];
        b += x[i] * w3[i * F + f];
      }
      const double h = a / (1.0 + std::exp(-a)) * b;
      acc += h * w2[f * C + c];
    }
    out[c] += scale * acc;
  }
}

// SPEC section 1's selection for one token by sorting: the K experts with the largest
// s = p + b (p[E], bias[E]); with R > 1 groups only those of the M groups with the largest sums
// of their ceil(K/M) best s. Stable sorts of indices (descending), so ties keep the lower index.
inline std::vector<int> naive_topk(const double* p, const std::vector<double>& bias, int E, int K,
                                   int R = 1, int M = 1) {
  std::vector<double> s(E);
  for (int e = 0; e < E; ++e) s[e] = p[e] + bias[e];
  auto by_score = [](std::vector<int>& idx, const std::vector<double>& v) {
    std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return v[a] > v[b]; });
  };
  std::vector<int> allowed(E, 1);
  if (R > 1) {
    const int Eg = E / R, r = (K + M - 1) / M;
    std::vector<double> gs(R, 0.0);
    for (int g = 0; g < R; ++g) {
      std::vector<int> members(Eg);
      std::iota(members.begin(), members.end(), g * Eg);
      by_score(members, s);
      for (int j = 0; j < r; ++j) gs[g] += s[members[j]];
    }
    std::vector<int> groups(R);
    std::iota(groups.begin(), groups.end(), 0);
    by_score(groups, gs);
    std::fill(allowed.begin(), allowed.end(), 0);
    for (int m = 0; m < M; ++m)
      for (int e = groups[m] * Eg; e < (groups[m] + 1) * Eg; ++e) allowed[e] = 1;
  }
  std::vector<int> order;
  for (int e = 0; e < E; ++e)
    if (allowed[e]) order.push_back(e);
  by_score(order, s);
  order.resize(K);
  return order;
}

// The SPEC MoE forward for dropless routing, token by token: out[N,C] (=); returns the weighted
// aux + z losses. Softmax or sigmoid scores, top-k by naive_topk, gates times d.gate_scale.
inline MoeLoss naive_moe_forward(std::vector<double>& out, const std::vector<double>& m, int B,
                                 int T_, const MoeDims& d, const MoeParams<double>& w,
                                 const LossScale& s) {
  const int N = B * T_, C = d.C, E = d.E, K = d.K, F = d.F;
  out.assign(static_cast<size_t>(N) * C, 0.0);
  const bool sigmoid = d.score == Score::kSigmoid;
  std::vector<double> p(static_cast<size_t>(N) * E), q(p.size());  // q: p normalised over E
  std::vector<int> sel(static_cast<size_t>(N) * K);
  MoeLoss loss;
  for (int n = 0; n < N; ++n) {
    const double* x = &m[static_cast<size_t>(n) * C];
    std::vector<double> z(E, 0.0);
    for (int e = 0; e < E; ++e)
      for (int c = 0; c < C; ++c) z[e] += x[c] * w.router[c * E + e];
    double zmax = *std::max_element(z.begin(), z.end()), sum = 0.0;
    for (int e = 0; e < E; ++e) sum += std::exp(z[e] - zmax);
    const double lse = zmax + std::log(sum);
    if (!sigmoid) loss.z += d.z_coeff * lse * lse * s.token_weight;
    double psum = 0.0;
    for (int e = 0; e < E; ++e) {
      p[n * E + e] = sigmoid ? 1.0 / (1.0 + std::exp(-z[e])) : std::exp(z[e] - lse);
      psum += p[n * E + e];
    }
    for (int e = 0; e < E; ++e) q[n * E + e] = p[n * E + e] / psum;
    const std::vector<int> order = naive_topk(&p[static_cast<size_t>(n) * E], w.bias, E, K,
                                              d.route_groups, d.route_groups_topk);
    double gsum = 0.0;
    for (int j = 0; j < K; ++j) gsum += p[n * E + order[j]];
    for (int j = 0; j < K; ++j) {
      const int e = order[j];
      sel[n * K + j] = e;
      const double gate = (d.norm_topk ? p[n * E + e] / gsum : p[n * E + e]) * d.gate_scale;
      const size_t eo = static_cast<size_t>(e) * C * F;
      naive_swiglu_add(&out[static_cast<size_t>(n) * C], x, &w.w1[eo], &w.w3[eo], &w.w2[eo], C, F,
                       gate);
    }
    for (int sh = 0; sh < d.S; ++sh) {
      const size_t so = static_cast<size_t>(sh) * C * F;
      naive_swiglu_add(&out[static_cast<size_t>(n) * C], x, &w.sw1[so], &w.sw3[so], &w.sw2[so], C,
                       F, 1.0);
    }
  }
  const bool per_seq = d.aux_scope == AuxScope::kSequence;
  const int G = per_seq ? B : 1, NG = per_seq ? T_ : N;
  for (int g = 0; g < G; ++g) {
    double acc = 0.0;
    for (int e = 0; e < E; ++e) {
      double cnt = 0.0, P = 0.0;
      for (int n = g * NG; n < (g + 1) * NG; ++n) {
        for (int j = 0; j < K; ++j) cnt += sel[n * K + j] == e ? 1.0 : 0.0;
        P += q[n * E + e];
      }
      acc += cnt / (NG * K) * (P / NG);
    }
    loss.aux += d.aux_coeff * E * acc * s.group_weight;
  }
  return loss;
}

}  // namespace sy::test
