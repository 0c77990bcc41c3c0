// The all-to-all rows of src/plan/traffic.h against a brute-force expectation: every K-subset of
// experts a token can choose (and, node-limited, every kept node first), each equally likely,
// with the exchange's rules applied to it (flat: once per other EP rank holding one of the
// token's experts; hierarchical: once per other node).
#include "src/plan/traffic.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <functional>
#include <optional>
#include <set>
#include <tuple>
#include <vector>

#include "src/config/config.h"

namespace sy::plan {
namespace {

void for_each_subset(int n, int k, const std::function<void(const std::vector<int>&)>& f) {
  std::vector<int> c(static_cast<size_t>(k));
  std::function<void(int, int)> rec = [&](int at, int from) {
    if (at == k) return f(c);
    for (int i = from; i < n; ++i) {
      c[static_cast<size_t>(at)] = i;
      rec(at + 1, i + 1);
    }
  };
  rec(0, 0);
}

struct Expected {
  double flat_intra = 0, flat_inter = 0, hier_inter = 0, recv = 0;
};

// Source EP rank `src` of P ranks on G nodes (E experts, L = E/P per rank), tokens choosing K of
// the experts of M kept nodes out of G (M = G: plain top-k): expected rows per token.
Expected brute(int E, int K, int P, int G, int M, int src) {
  const int L = E / P, Rn = P / G;
  Expected x;
  double total = 0;
  for_each_subset(G, M, [&](const std::vector<int>& nodes) {
    std::vector<int> pool;
    for (int g : nodes)
      for (int e = g * Rn * L; e < (g + 1) * Rn * L; ++e) pool.push_back(e);
    for_each_subset(static_cast<int>(pool.size()), K, [&](const std::vector<int>& pick) {
      std::set<int> ranks, hit_nodes;
      for (int i : pick) {
        const int rank = pool[static_cast<size_t>(i)] / L;
        ranks.insert(rank);
        hit_nodes.insert(rank / Rn);
      }
      for (int q : ranks) {
        if (q == src) continue;
        (q / Rn == src / Rn ? x.flat_intra : x.flat_inter) += 1;
      }
      for (int g : hit_nodes) x.hier_inter += g != src / Rn;
      x.recv += ranks.count(src) ? P : 0;  // P sources, each reaching src this often
      total += 1;
    });
  });
  x.flat_intra /= total;
  x.flat_inter /= total;
  x.hier_inter /= total;
  x.recv /= total;
  return x;
}

Config cfg_of(int E, int K, int micro_batch, int seq_len) {
  Config c;
  c.moe.num_experts = E;
  c.moe.top_k = K;
  c.train.micro_batch = micro_batch;
  c.train.global_batch = micro_batch;
  c.model.seq_len = seq_len;
  return c;
}

// `ep` EP ranks (tp = etp = 1) on `world` ranks, `per_node` per node.
PlanLayout ep_layout(int64_t world, int64_t per_node, int64_t ep) {
  PlanLayout l;
  l.world = world;
  l.ranks_per_node = per_node;
  l.ep = ep;
  return l;
}

TEST(PlanTraffic, FlatAndHierarchicalRowsMatchEnumeration) {
  for (auto [E, K, P, G] : std::vector<std::array<int, 4>>{
           {8, 2, 4, 2}, {8, 3, 4, 2}, {16, 4, 8, 4}, {12, 2, 6, 3}, {8, 2, 4, 1}}) {
    Config cfg = cfg_of(E, K, 2, 8);
    const PlanLayout lay = ep_layout(P, P / G, P);
    const LayerTraffic t = layer_traffic(cfg, lay, RoutingStats{}, 0);
    const double N = 16;
    ASSERT_EQ(t.nodes, G);
    const Expected x = brute(E, K, P, G, G, 0);  // uniform: every source alike
    EXPECT_NEAR(t.flat_sent_intra, N * x.flat_intra, 1e-9) << E << " " << K << " " << P;
    EXPECT_NEAR(t.flat_sent_inter, N * x.flat_inter, 1e-9) << E << " " << K << " " << P;
    EXPECT_NEAR(t.hier_sent_inter, N * x.hier_inter, 1e-9) << E << " " << K << " " << P;
    EXPECT_NEAR(t.recv_mean, N * x.recv, 1e-9) << E << " " << K << " " << P;
    // A receiver gets as many rows from the others as a sender sends them (uniform routing).
    EXPECT_NEAR(t.flat_recv_intra + t.flat_recv_inter, t.flat_sent_intra + t.flat_sent_inter, 1e-9);
    // Hierarchical never sends more across nodes than flat, and exactly once per node.
    EXPECT_LE(t.hier_sent_inter, t.flat_sent_inter + 1e-12);
    // Assignments: P slices of N tokens, K each, spread over P ranks.
    EXPECT_NEAR(t.assign_mean, N * K, 1e-9);
  }
}

TEST(PlanTraffic, NodeLimitedRoutingMatchesEnumeration) {
  // 4 nodes of 2 EP ranks, 16 experts, top-4 from at most M nodes (route_groups: nodes).
  for (int M : {1, 2, 3}) {
    Config cfg = cfg_of(16, 4, 1, 8);
    cfg.moe.route_groups.nodes = true;
    cfg.moe.route_groups_topk = M;
    const PlanLayout lay = ep_layout(8, 2, 8);
    const LayerTraffic t = layer_traffic(cfg, lay, RoutingStats{}, 0);
    const Expected x = brute(16, 4, 8, 4, M, 0);
    EXPECT_NEAR(t.hier_sent_inter, 8 * x.hier_inter, 1e-9) << "M=" << M;
    EXPECT_NEAR(t.flat_sent_inter, 8 * x.flat_inter, 1e-9) << "M=" << M;
    EXPECT_NEAR(t.flat_sent_intra, 8 * x.flat_intra, 1e-9) << "M=" << M;
  }
}

TEST(PlanTraffic, TensorParallelRanksMoveTheirSliceAndCapacityBoundsAssignments) {
  Config cfg = cfg_of(4, 2, 4, 16);  // N = 64
  PlanLayout lay;
  lay.world = 4;
  lay.ranks_per_node = 4;
  lay.tp = 2;
  lay.ep = 2;
  const LayerTraffic t = layer_traffic(cfg, lay, RoutingStats{}, 0);
  EXPECT_DOUBLE_EQ(t.slice, 32);
  EXPECT_NEAR(t.assign_mean, 2 * 32 * 2 / 2.0, 1e-12);  // 2 slices of 32 tokens, K=2, 1/2 each
  cfg.moe.capacity_factor = 1.0;  // each expert takes ceil(1 * 64 * 2 / 4) = 32 per micro-batch
  const LayerTraffic c = layer_traffic(cfg, lay, RoutingStats{}, 0);
  // This rank's 2 experts see 2 slices = 1 micro-batch's worth: at most 2 * 32 assignments.
  EXPECT_LE(c.assign_quantile, 64.0 + 1e-9);
  EXPECT_GT(t.assign_quantile, 64.0);
}

TEST(PlanTraffic, CapacityDropsRowsByTheKeptFraction) {
  // One node of 4 EP ranks, E = 4, K = 2, N = 64 tokens. Uniform: each expert's count has mean
  // mu = 32 and sd sqrt(32 * 3/4); with capacity_factor 1 the cap is 32 (z = 0) and an expert
  // loses E[(X - 32)+] = sd / sqrt(2 pi) on average, so rows shrink by 1 - that / 32.
  Config cfg = cfg_of(4, 2, 2, 32);
  const PlanLayout lay = ep_layout(4, 4, 4);
  const LayerTraffic all = layer_traffic(cfg, lay, RoutingStats{}, 0);
  cfg.moe.capacity_factor = 1.0;
  const LayerTraffic kept = layer_traffic(cfg, lay, RoutingStats{}, 0);
  const double lost = std::sqrt(32 * 0.75) / std::sqrt(2 * M_PI);
  EXPECT_NEAR(kept.flat_sent_intra, all.flat_sent_intra * (1 - lost / 32), 1e-9);

  // Measured: every token picks expert 0 (K = 1): the cap keeps a quarter of its assignments,
  // so each of the 3 other ranks sends rank 0 a quarter of its 64 tokens; rank 0 sends nothing.
  cfg.moe.top_k = 1;
  RoutingStats hot;
  hot.load = {{1.0, 0.0, 0.0, 0.0}};
  const LayerTraffic h = layer_traffic(cfg, lay, hot, 0);
  EXPECT_NEAR(h.flat_sent_intra, 3 * 0.25 * 64 / 4.0, 1e-9);

  // Measured steps: one where every token picks expert 0, one where every token picks expert 1.
  // Rank 0 keeps a quarter of its assignments in the first and has none in the second: a
  // quarter of its rows overall (the mean load, half and half, would keep half).
  RoutingStats steps;
  steps.load = {{0.5, 0.5, 0.0, 0.0}};
  steps.step_loads = {{{1.0, 0.0, 0.0, 0.0}}, {{0.0, 1.0, 0.0, 0.0}}};
  const LayerTraffic s = layer_traffic(cfg, lay, steps, 0);
  RoutingStats mean_only;
  mean_only.load = steps.load;
  const LayerTraffic m = layer_traffic(cfg, lay, mean_only, 0);
  // Every source sends to ranks 0 and 1 with the mean hit probability, times the kept fraction:
  // 1/4 from the steps (16 of 64 once, nothing once); from the mean load 1/2 (mu = 32, sd 4,
  // cap 16: z = -4 loses 4 phi(-4) + 16 (1 - Phi(-4)) of 32, about half).
  const double lost_mean =
      4 * std::exp(-8.0) / std::sqrt(2 * M_PI) + 16 * 0.5 * std::erfc(-4 / std::sqrt(2.0));
  const double mean_kept = (32 - lost_mean) / 32;
  EXPECT_NEAR(s.flat_sent_intra / m.flat_sent_intra, 0.25 / mean_kept, 1e-9);
}

// A row crosses to a node (rank) when ANY of the token's assignments there survives the capacity:
// with k = 4 of E = 8 and 4 experts per node a token has two assignments on a node on average, so
// rows shrink far less than assignments (before, rows were scaled by the kept fraction q of the
// assignments: 0.78 of the measured bytes in a k = 4 run dropping 31 %). Against the count
// enumerated over J, the token's assignments on the node (hypergeometric), each kept with q.
TEST(PlanTraffic, CapacityDropsARowOnlyWhenAllItsAssignmentsThereAreDropped) {
  Config cfg = cfg_of(8, 4, 2, 32);           // N = 64: an expert's count has mu = 32, f = 1/8
  const PlanLayout lay = ep_layout(4, 2, 4);  // 2 nodes of 2 ranks, 2 experts a rank
  const LayerTraffic all = layer_traffic(cfg, lay, RoutingStats{}, 0);
  cfg.moe.capacity_factor = 1.0;  // cap 32 = mu: z = 0
  const LayerTraffic kept = layer_traffic(cfg, lay, RoutingStats{}, 0);
  const double q = 1 - std::sqrt(32 * 7.0 / 8) / std::sqrt(2 * M_PI) / 32;
  // P(J = j) for a set of `set` of the 8 experts: C(set, j) C(8 - set, 4 - j) / C(8, 4).
  auto rows_kept = [&](int set) {
    double hit = 0, kept_rows = 0;
    for (int j = 1; j <= std::min(set, 4); ++j) {
      const double pj = std::tgamma(set + 1.0) / std::tgamma(j + 1.0) / std::tgamma(set - j + 1.0) *
                        std::tgamma(8.0 - set + 1) / std::tgamma(4.0 - j + 1) /
                        std::tgamma(8.0 - set - 4 + j + 1) / 70;
      hit += pj;
      kept_rows += pj * (1 - std::pow(1 - q, j));
    }
    return kept_rows / hit;
  };
  const double node = kept.hier_sent_inter / all.hier_sent_inter;
  const double rank = kept.flat_sent_inter / all.flat_sent_inter;
  EXPECT_NEAR(node, rows_kept(4), 0.02 * rows_kept(4));   // 0.982 by the count
  EXPECT_NEAR(rank, rows_kept(2), 0.025 * rows_kept(2));  // 0.951
  EXPECT_GT(node, q + 0.04);
}

TEST(PlanTraffic, ASampleOfTokensGivesTheRows) {
  // 2 EP ranks on 2 nodes (experts {0,1} and {2,3}); sampled tokens {0,1}, {0,2}, {2,3}, {1,3}:
  // from rank 0's slice a token crosses to rank 1 with the sampled 3/4 (uniform top-2 of 4
  // would give 1 - C(2,2)/C(4,2) = 5/6).
  Config cfg = cfg_of(4, 2, 2, 8);  // N = 16
  const PlanLayout lay = ep_layout(2, 1, 2);
  RoutingStats r;
  r.load = {{0.25, 0.25, 0.25, 0.25}};
  r.sample = {{0, 1, 0, 2, 2, 3, 1, 3}};
  r.sample_k = 2;
  EXPECT_NEAR(layer_traffic(cfg, lay, r, 0).flat_sent_inter, 16 * 0.75, 1e-12);
  EXPECT_NEAR(layer_traffic(cfg, lay, RoutingStats{}, 0).flat_sent_inter, 16 * 5.0 / 6.0, 1e-12);
}

TEST(PlanTraffic, BuffersFollowTheBusiestMeasuredStep) {
  Config cfg = cfg_of(4, 1, 2, 32);  // N = 64
  const PlanLayout lay = ep_layout(4, 4, 4);
  RoutingStats r;
  r.load = {{0.25, 0.25, 0.25, 0.25}};
  const LayerTraffic even = layer_traffic(cfg, lay, r, 0);
  r.peak_load = {{0.25, 0.5, 0.25, 0.25}};  // expert 1 once took half the assignments
  const LayerTraffic peaked = layer_traffic(cfg, lay, r, 0);
  EXPECT_DOUBLE_EQ(peaked.assign_busiest, even.assign_busiest);  // time: the mean load
  EXPECT_DOUBLE_EQ(peaked.recv_mean, even.recv_mean);
  // Buffers: 4 slices of 64 tokens, K = 1, half of them to rank 1: 128 + 3.72 sd, sd^2 =
  // 256 * (1/2)(1/2)(4-1)/(4-1).
  EXPECT_NEAR(peaked.assign_quantile, 128 + kBufferQuantileZ * std::sqrt(256 * 0.25), 1e-9);
  EXPECT_GT(peaked.recv_quantile, even.recv_quantile);
}

// Time follows each measured step's busiest rank (the ranks wait for whichever is busiest at the
// time), not the busiest rank of the mean loads.
TEST(PlanTraffic, TheBusiestRankIsEachStepsOwn) {
  Config cfg = cfg_of(4, 1, 2, 32);  // N = 64
  const PlanLayout lay = ep_layout(4, 4, 4);
  RoutingStats r;
  r.load = {{0.3125, 0.375, 0.1875, 0.125}};  // the mean of the two steps
  const LayerTraffic mean_only = layer_traffic(cfg, lay, r, 0);
  // 4 slices of 64 tokens, K = 1: 256 assignments; expert 1 busiest at 3/8.
  EXPECT_DOUBLE_EQ(mean_only.assign_busiest, 96);
  EXPECT_DOUBLE_EQ(mean_only.assign_mean, 64);
  r.step_loads = {{{0.5, 0.25, 0.125, 0.125}}, {{0.125, 0.5, 0.25, 0.125}}};
  const LayerTraffic steps = layer_traffic(cfg, lay, r, 0);
  EXPECT_DOUBLE_EQ(steps.assign_busiest, 128);  // half of them, in each step
  EXPECT_DOUBLE_EQ(steps.assign_mean, 64);
}

// Uniform routing takes a shortcut (one expert's kept fraction for all, no loop over E): it must
// give what the per-expert path gives for loads that are exactly uniform, dropless and with a
// capacity.
TEST(PlanTraffic, UniformShortcutMatchesExplicitlyUniformLoads) {
  for (const std::optional<double> capacity :
       {std::optional<double>{}, std::optional<double>{1.0}}) {
    Config cfg = cfg_of(16, 2, 4, 32);
    cfg.moe.capacity_factor = capacity;
    const PlanLayout lay = ep_layout(8, 4, 4);
    RoutingStats loads;
    loads.source = "explicitly uniform";
    loads.load = {std::vector<double>(16, 1.0 / 16)};
    const LayerTraffic fast = layer_traffic(cfg, lay, RoutingStats{}, 0);
    const LayerTraffic slow = layer_traffic(cfg, lay, loads, 0);
    for (const auto& [what, a, b] :
         {std::tuple{"assign_busiest", fast.assign_busiest, slow.assign_busiest},
          std::tuple{"assign_mean", fast.assign_mean, slow.assign_mean},
          std::tuple{"flat_sent_total", fast.flat_sent_total, slow.flat_sent_total},
          std::tuple{"recv_mean", fast.recv_mean, slow.recv_mean}})
      EXPECT_NEAR(a, b, 1e-9 * std::max(1.0, std::abs(b)))
          << what << " capacity " << capacity.has_value();
  }
}

}  // namespace
}  // namespace sy::plan
