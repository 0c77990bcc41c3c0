#include "src/plan/traffic.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace sy::plan {

namespace {

// The trainer's capacity of an expert in one micro-batch (moe_capacity).
double capacity_of(const Config& cfg) {
  return static_cast<double>(moe_capacity(*cfg.moe.capacity_factor,
                                          cfg.train.micro_batch * cfg.model.seq_len, cfg.moe.top_k,
                                          cfg.moe.num_experts));
}

// What a capacity keeps of the assignments to experts [first, first + count) in one micro-batch
// of N tokens: per expert, of X ~ its count (mean mu = N K f, variance mu (1 - f) under the
// binomial approximation, f its share), the kept E[min(X, cap)] = mu - E[(X - cap)+], with
// E[(X - c)+] = s phi(z) + (mu - c)(1 - Phi(z)), z = (c - mu) / s (normal approximation),
// cap = moe_capacity (ceil(c N K / E)). `share(e)` gives f.
struct Kept {
  double kept = 0, assigned = 0;
};
template <class Share>
Kept kept_of(const Config& cfg, int64_t first, int64_t count, Share&& share) {
  const auto K = static_cast<double>(cfg.moe.top_k);
  const double N =
      static_cast<double>(cfg.train.micro_batch) * static_cast<double>(cfg.model.seq_len);
  const double cap = capacity_of(cfg);
  Kept k;
  for (int64_t e = first; e < first + count; ++e) {
    const double f = share(e);
    const double mu = N * K * f, sd = std::sqrt(std::max(0.0, mu * (1 - f)));
    double over = std::max(0.0, mu - cap);
    if (sd > 0) {
      const double z = (cap - mu) / sd;
      const double phi = std::exp(-0.5 * z * z) / std::sqrt(2 * M_PI);
      over = sd * phi + (mu - cap) * 0.5 * std::erfc(z / std::sqrt(2.0));
    }
    k.assigned += mu;
    k.kept += mu - over;
  }
  return k;
}

// f(loads) for each measured step's loads of `layer` (routing.step_loads), skipping the steps
// that hold no E loads for it.
template <class F>
void for_each_step_loads(const RoutingStats& routing, int64_t layer, int64_t E, F&& f) {
  for (const auto& step : routing.step_loads) {
    const std::vector<double>* loads = layer_of(step, layer);
    if (loads && static_cast<int64_t>(loads->size()) == E) f(*loads);
  }
}

// Uniform routing (no measured loads): every expert's share is 1 / E, so each expert keeps the
// same fraction. Worked out once instead of once per expert: E may be 2^31 in a config the
// memory check is about to refuse, and that refusal must come in well under a second.
bool uniform_loads(const RoutingStats& routing) {
  return routing.uniform() && routing.step_loads.empty();
}
double uniform_kept_fraction(const Config& cfg) {
  const auto E = static_cast<double>(cfg.moe.num_experts);
  const Kept one = kept_of(cfg, 0, 1, [&](int64_t) { return 1.0 / E; });
  return one.assigned > 0 ? one.kept / one.assigned : 1.0;
}

// The kept fraction: under the mean loads, or with measured steps over every step's own loads
// (drops come from the busy steps, not from the mean), weighted by what each step assigned.
double kept_fraction(const Config& cfg, const RoutingStats& routing, int64_t layer, int64_t first,
                     int64_t count) {
  if (uniform_loads(routing)) return uniform_kept_fraction(cfg);
  Kept total;
  if (routing.step_loads.empty()) {
    total = kept_of(cfg, first, count, [&](int64_t e) {
      return assignment_share(routing, cfg.moe.num_experts, layer, e, 1);
    });
  }
  for_each_step_loads(routing, layer, cfg.moe.num_experts, [&](const std::vector<double>& loads) {
    const Kept k =
        kept_of(cfg, first, count, [&](int64_t e) { return loads[static_cast<size_t>(e)]; });
    total.kept += k.kept;
    total.assigned += k.assigned;
  });
  return total.assigned > 0 ? total.kept / total.assigned : 1.0;
}

// The largest and the mean EP rank's share of the layer's kept assignments (rank p holds experts
// [p L, (p + 1) L)): a rank's share is its experts' loads times what the capacity keeps of each
// (kept_of, one expert at a time). With measured steps, averaged over the steps, each step's own
// busiest rank (the ranks wait for whichever is busiest at the time, which moves from step to
// step); otherwise from the mean loads (uniform: every rank the same).
struct RankShares {
  double busiest = 0, mean = 0;
};
RankShares rank_shares(const Config& cfg, const RoutingStats& routing, int64_t layer, int64_t P) {
  const int64_t E = cfg.moe.num_experts, L = E / P;
  if (uniform_loads(routing)) {  // every rank holds L experts of share 1 / E, each keeping alike
    const double share = static_cast<double>(L) / static_cast<double>(E) *
                         (cfg.moe.capacity_factor ? uniform_kept_fraction(cfg) : 1.0);
    return {share, share};
  }
  auto of_loads = [&](auto&& load) {
    RankShares r;
    for (int64_t p = 0; p < P; ++p) {
      double share = 0;
      for (int64_t e = p * L; e < (p + 1) * L; ++e) {
        double kept = 1;
        if (cfg.moe.capacity_factor) {
          const Kept k = kept_of(cfg, e, 1, load);
          kept = k.assigned > 0 ? k.kept / k.assigned : 1.0;
        }
        share += load(e) * kept;
      }
      r.busiest = std::max(r.busiest, share);
      r.mean += share / static_cast<double>(P);
    }
    return r;
  };
  RankShares total;
  int64_t steps = 0;
  for_each_step_loads(routing, layer, E, [&](const std::vector<double>& loads) {
    const RankShares r = of_loads([&](int64_t e) { return loads[static_cast<size_t>(e)]; });
    total.busiest += r.busiest;
    total.mean += r.mean;
    ++steps;
  });
  if (steps > 0)
    return {total.busiest / static_cast<double>(steps), total.mean / static_cast<double>(steps)};
  return of_loads([&](int64_t e) { return assignment_share(routing, E, layer, e, 1); });
}

}  // namespace

LayerTraffic layer_traffic(const Config& cfg, const PlanLayout& lay, const RoutingStats& routing,
                           int64_t layer) {
  LayerTraffic t;
  const int64_t E = cfg.moe.num_experts, P = lay.ep, G = lay.ep_nodes(), Rn = P / G;
  const int64_t L = E / P;
  t.tokens = static_cast<double>(cfg.train.micro_batch) * static_cast<double>(cfg.model.seq_len);
  t.slice = t.tokens / static_cast<double>(lay.tp);
  t.nodes = G;
  t.ep_ranks_per_node = Rn;
  RouteShape shape;
  shape.E = E;
  shape.K = cfg.moe.top_k;
  shape.groups = route_groups_of(cfg, lay);
  shape.groups_topk = shape.groups > 1 ? cfg.moe.route_groups_topk : 1;

  // P(a token reaches EP rank p) and P(it reaches node g), from the experts each holds.
  // A measured sample of whole tokens' top-k counts them directly.
  std::vector<double> p_rank = sample_hit_fractions(routing, E, layer, L);
  std::vector<double> p_node = sample_hit_fractions(routing, E, layer, Rn * L);
  if (p_rank.empty() || p_node.empty()) {
    p_rank.assign(static_cast<size_t>(P), 0.0);
    p_node.assign(static_cast<size_t>(G), 0.0);
    for (int64_t p = 0; p < P; ++p)
      p_rank[static_cast<size_t>(p)] = hit_probability(shape, routing, layer, p * L, L);
    for (int64_t g = 0; g < G; ++g)
      p_node[static_cast<size_t>(g)] = hit_probability(shape, routing, layer, g * Rn * L, Rn * L);
  }
  // Under a capacity, a token's row still travels to a rank (node) when ANY of its assignments
  // there is kept. With q the kept fraction of the set's assignments and m = E[J | J >= 1] the
  // assignments a token that reaches the set has in it (E[J] = K x the set's share), the row is
  // sent with P(hit) (1 - (1 - q)^m): one assignment (m = 1, one expert per rank) gives q, as
  // before; the 4 of k = 4 on a node of 4 of 8 experts lose far fewer rows than assignments.
  // (The exact sum over J with independent drops predicts fewer rows than the first steps of
  // measured runs show, 0.701 against 0.734 and 0.969 against 0.988, and the mean m closer,
  // 0.725 and 0.989: a token's drops are not independent; a capacity drops the low scores, and
  // a token's first choice is rarely among them.)
  if (cfg.moe.capacity_factor) {
    const auto K = static_cast<double>(cfg.moe.top_k);
    auto kept_rows = [&](double& p_hit, int64_t first, int64_t count) {
      if (p_hit <= 0) return;
      const double q = kept_fraction(cfg, routing, layer, first, count);
      // (the shares and the hit probability may come from different measurements: m is held
      // to what a token can have in the set, 1 to min(count, K))
      const double m = std::clamp(K * assignment_share(routing, E, layer, first, count) / p_hit,
                                  1.0, std::min(static_cast<double>(count), K));
      p_hit *= 1 - std::pow(1 - q, m);
    };
    for (int64_t p = 0; p < P; ++p) kept_rows(p_rank[static_cast<size_t>(p)], p * L, L);
    for (int64_t g = 0; g < G; ++g) kept_rows(p_node[static_cast<size_t>(g)], g * Rn * L, Rn * L);
  }
  const double sum_rank = std::accumulate(p_rank.begin(), p_rank.end(), 0.0);
  const double sum_node = std::accumulate(p_node.begin(), p_node.end(), 0.0);
  const double max_rank = *std::max_element(p_rank.begin(), p_rank.end());
  const double max_node = *std::max_element(p_node.begin(), p_node.end());
  const double Ns = t.slice;

  // Flat: source s sends Ns * p_rank[q] rows to every other EP rank q (mean over sources);
  // the busiest receiver gets Ns * p_rank[r] from each of the other P - 1 sources.
  double intra = 0, inter = 0, hier_inter = 0;
  for (int64_t s = 0; s < P; ++s) {
    const int64_t g = s / Rn;
    double same_node = 0;
    for (int64_t q = g * Rn; q < (g + 1) * Rn; ++q) same_node += p_rank[static_cast<size_t>(q)];
    intra += same_node - p_rank[static_cast<size_t>(s)];
    inter += sum_rank - same_node;
    hier_inter += sum_node - p_node[static_cast<size_t>(g)];  // once per other node
  }
  t.flat_sent_intra = Ns * intra / static_cast<double>(P);
  t.flat_sent_inter = Ns * inter / static_cast<double>(P);
  t.flat_sent_total = Ns * sum_rank;
  t.flat_recv_intra = static_cast<double>(Rn - 1) * Ns * max_rank;
  t.flat_recv_inter = static_cast<double>(P - Rn) * Ns * max_rank;

  // Hierarchical: one copy per other node to the forwarder; the busiest forwarder receives from
  // the G - 1 sources with its local index on the other nodes. A receiver gets its rows from all
  // P sources; those forwarded by another rank of its node (P - G of the sources) are copied
  // through shared memory.
  t.hier_sent_inter = Ns * hier_inter / static_cast<double>(P);
  t.hier_recv_inter = static_cast<double>(G - 1) * Ns * max_node;
  t.hier_intra = static_cast<double>(P - G) * Ns * max_rank;
  t.hier_intra_mean = static_cast<double>(P - G) * Ns * sum_rank / static_cast<double>(P);
  t.hier_xrecv = static_cast<double>(G) * Ns * max_node;
  t.hier_xsend = Ns * (sum_node - *std::min_element(p_node.begin(), p_node.end()));

  // The busiest rank's share of the assignments at its busiest measured step (its buffers grow
  // to that; the same as the average under uniform routing).
  double share_peak = 0;
  for (int64_t p = 0; p < P; ++p)
    share_peak = std::max(share_peak, peak_assignment_share(routing, E, layer, p * L, L));
  const double p_peak =
      std::max(max_rank, hit_probability(shape, share_peak * static_cast<double>(E)));

  // Rows arriving at a rank (itself included): P sources of Ns tokens, each reaching the rank
  // with probability p (a binomial count; the busiest rank at the buffer quantile).
  const double sources = static_cast<double>(P) * Ns;
  t.recv_mean = sources * sum_rank / static_cast<double>(P);
  t.recv_quantile = std::min(
      sources, sources * p_peak + kBufferQuantileZ * std::sqrt(sources * p_peak * (1.0 - p_peak)));

  // Assignments at a rank's experts: the etp group gathers its members' rows, so the rank's
  // experts see the tokens of etp * P slices; under a capacity each of the micro-batches behind
  // them gives an expert at most ceil(c * N * K / E).
  const double tokens_seen = static_cast<double>(lay.etp) * sources;
  const AssignmentCount peak = assignments(tokens_seen, E, cfg.moe.top_k, share_peak);
  t.assign_quantile = peak.quantile;
  // Time: the busiest and the mean rank's kept assignments (rank_shares: under a capacity what
  // it keeps of each expert, so a dropping run's mean rank does less than the cap allows).
  const RankShares shares = rank_shares(cfg, routing, layer, P);
  t.assign_busiest = assignments(tokens_seen, E, cfg.moe.top_k, shares.busiest).mean;
  t.assign_mean = assignments(tokens_seen, E, cfg.moe.top_k, shares.mean).mean;
  if (cfg.moe.capacity_factor) {
    const double cap = capacity_of(cfg);
    t.assign_quantile =
        std::min(t.assign_quantile, static_cast<double>(L) * cap * tokens_seen / t.tokens);
  }
  return t;
}

}  // namespace sy::plan
