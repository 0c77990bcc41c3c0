#include "src/plan/routing.h"

#include <algorithm>
#include <cmath>

namespace sy::plan {

namespace {

// log C(n, k) for integers 0 <= k <= n.
double log_choose(int64_t n, int64_t k) {
  return std::lgamma(static_cast<double>(n) + 1) - std::lgamma(static_cast<double>(k) + 1) -
         std::lgamma(static_cast<double>(n - k) + 1);
}

// P(exactly j of the h special groups among M groups drawn from R) (hypergeometric).
double groups_kept(int64_t R, int64_t h, int64_t M, int64_t j) {
  if (j < 0 || j > h || j > M || M - j > R - h) return 0.0;
  return std::exp(log_choose(h, j) + log_choose(R - h, M - j) - log_choose(R, M));
}

}  // namespace

const std::vector<double>* layer_of(const std::vector<std::vector<double>>& v, int64_t layer) {
  if (v.empty()) return nullptr;
  return &v[static_cast<size_t>(std::min<int64_t>(layer, static_cast<int64_t>(v.size()) - 1))];
}

double choose_ratio(double n, double m, int64_t K) {
  double p = 1.0;
  for (int64_t j = 0; j < K; ++j) {
    const double num = n - static_cast<double>(j), den = m - static_cast<double>(j);
    if (num <= 0 || den <= 0) return 0.0;
    p *= num / den;
    if (p < 1e-300) return 0.0;
  }
  return p;
}

double hit_probability(const RouteShape& r, double s) {
  const auto E = static_cast<double>(r.E);
  if (s <= 0) return 0.0;
  if (s >= E) return 1.0;
  // Plain top-k: the token's K experts are a K-subset of all E; it misses the set when all K
  // fall among the other E - s experts.
  if (r.groups <= 1) return 1.0 - choose_ratio(E - s, E, r.K);
  // Group-limited: the token keeps M of R groups (each M-subset equally likely), then picks its
  // K experts among the pool of M*g experts of its kept groups.
  const double g = E / static_cast<double>(r.groups);
  const double pool = static_cast<double>(r.groups_topk) * g;
  const double kept = static_cast<double>(r.groups_topk) / static_cast<double>(r.groups);
  // A set inside one group: the group must be kept, then some pick must land in the set.
  if (s <= g) return kept * (1.0 - choose_ratio(pool - s, pool, r.K));
  // A set of h whole groups: j of them kept (hypergeometric), then all K picks miss the j*g
  // experts of the set in the pool.
  const auto h = std::max<int64_t>(1, std::llround(s / g));
  double miss = 0.0;
  for (int64_t j = 0; j <= std::min(h, r.groups_topk); ++j)
    miss += groups_kept(r.groups, h, r.groups_topk, j) *
            choose_ratio(pool - static_cast<double>(j) * g, pool, r.K);
  return 1.0 - miss;
}

double assignment_share(const RoutingStats& s, int64_t E, int64_t layer, int64_t first,
                        int64_t count) {
  const std::vector<double>* load = layer_of(s.load, layer);
  if (!load || static_cast<int64_t>(load->size()) != E)
    return static_cast<double>(count) / static_cast<double>(E);
  double share = 0.0;
  for (int64_t e = first; e < first + count; ++e) share += (*load)[static_cast<size_t>(e)];
  return share;
}

std::vector<int64_t> tokens_reaching_parts(std::span<const int32_t> topk, int64_t K,
                                           std::span<const int32_t> part_of, int64_t parts) {
  std::vector<int64_t> out(static_cast<size_t>(std::max<int64_t>(parts, 0)), 0);
  if (K < 1) return out;
  const auto E = static_cast<int64_t>(part_of.size());
  const size_t S = topk.size() / static_cast<size_t>(K);
  std::vector<int32_t> seen;  // the parts this token reached (at most K)
  for (size_t t = 0; t < S; ++t) {
    seen.clear();
    for (size_t j = 0; j < static_cast<size_t>(K); ++j) {
      const int64_t e = topk[t * static_cast<size_t>(K) + j];
      if (e < 0 || e >= E) continue;
      const int32_t part = part_of[static_cast<size_t>(e)];
      if (part < 0 || part >= parts) continue;
      if (std::find(seen.begin(), seen.end(), part) == seen.end()) seen.push_back(part);
    }
    for (int32_t part : seen) ++out[static_cast<size_t>(part)];
  }
  return out;
}

std::vector<double> sample_hit_fractions(const RoutingStats& s, int64_t E, int64_t layer,
                                         int64_t set_size) {
  std::vector<double> out;
  if (s.sample.empty() || s.sample_k < 1 || set_size < 1 || E % set_size != 0) return out;
  const auto& tok = s.sample[static_cast<size_t>(
      std::min<int64_t>(layer, static_cast<int64_t>(s.sample.size()) - 1))];
  const size_t S = tok.size() / static_cast<size_t>(s.sample_k);
  if (S == 0) return out;
  std::vector<int32_t> set_of(static_cast<size_t>(E));  // contiguous sets of set_size experts
  for (int64_t e = 0; e < E; ++e)
    set_of[static_cast<size_t>(e)] = static_cast<int32_t>(e / set_size);
  for (int64_t n : tokens_reaching_parts(tok, s.sample_k, set_of, E / set_size))
    out.push_back(static_cast<double>(n) / static_cast<double>(S));
  return out;
}

double peak_assignment_share(const RoutingStats& s, int64_t E, int64_t layer, int64_t first,
                             int64_t count) {
  const std::vector<double>* peak = layer_of(s.peak_load, layer);
  if (!peak || static_cast<int64_t>(peak->size()) != E)
    return assignment_share(s, E, layer, first, count);
  double share = 0.0;
  for (int64_t e = first; e < first + count; ++e) share += (*peak)[static_cast<size_t>(e)];
  return std::min(1.0, share);
}

// Measured routing: the set behaves like s_eff = E * share uniform experts (exact when the loads
// are uniform). With co-activation measured, the token's expert count X inside the set has the
// measured E[X] = K * share and pair count E[C(X,2)] = sum of the set's pair fractions; then
//   P(X >= 1) = E[X] - E[(X-1)+],
// and E[(X-1)+] is taken as c * E[C(X,2)] with c the ratio the uniform case has between the two
// (exact for X <= 2, where (X-1)+ = C(X,2), and for uniform pairs). So routing that sends a
// token's experts to the same rank more often than chance (more pairs) dedups more.
double hit_probability(const RouteShape& r, const RoutingStats& s, int64_t layer, int64_t first,
                       int64_t count) {
  if (s.uniform()) return hit_probability(r, static_cast<double>(count));
  const double share = assignment_share(s, r.E, layer, first, count);
  const double s_eff = share * static_cast<double>(r.E);
  const double p_uniform = hit_probability(r, s_eff);
  const std::vector<double>* pairs = layer_of(s.pairs, layer);
  if (!pairs || r.groups > 1 || static_cast<int64_t>(pairs->size()) != r.E * r.E || r.K < 2)
    return p_uniform;
  double measured = 0.0;
  for (int64_t i = first; i < first + count; ++i)
    for (int64_t j = i + 1; j < first + count; ++j)
      measured += (*pairs)[static_cast<size_t>(i * r.E + j)];
  const auto E = static_cast<double>(r.E), K = static_cast<double>(r.K);
  const double ex = K * share;
  const double pairs_uniform = K * (K - 1) / 2 * s_eff * (s_eff - 1) / (E * (E - 1));
  if (!(pairs_uniform > 0)) return p_uniform;
  const double c = (ex - p_uniform) / pairs_uniform;
  return std::clamp(ex - c * measured, 0.0, std::min(1.0, ex));
}

AssignmentCount assignments(double tokens, int64_t E, int64_t K, double share) {
  AssignmentCount a;
  const auto e = static_cast<double>(E), k = static_cast<double>(K);
  a.mean = tokens * k * share;
  const double var = E > 1 ? k * share * (1 - share) * (e - k) / (e - 1) : 0.0;
  a.quantile = a.mean + kBufferQuantileZ * std::sqrt(std::max(0.0, tokens * var));
  a.quantile = std::min(a.quantile, tokens * std::min(k, share * e));  // at most every token
  return a;
}

}  // namespace sy::plan
