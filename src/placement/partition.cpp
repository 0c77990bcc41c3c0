#include "src/placement/partition.h"

#include <metis.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "src/core/error.h"
#include "src/plan/routing.h"

namespace sy {

namespace {

// The units one METIS call places (experts, or whole route groups): n vertices of equal size,
// their loads, and the symmetric co-activation weights between them.
struct Graph {
  int n = 0;
  std::vector<int64_t> load;    // [n]
  std::vector<int64_t> weight;  // [n*n], diagonal ignored
  int64_t w(int a, int b) const { return weight[static_cast<size_t>(a) * n + b]; }
};

// Integers METIS can sum without overflowing its 32-bit idx_t: x * scale rounded, at least 1
// for a non-zero x (scale keeps the total under `cap`).
double scale_for(int64_t total, double cap) {
  const auto t = static_cast<double>(total);
  return t > cap ? cap / t : 1.0;
}
idx_t scaled(int64_t x, double scale) {
  if (x <= 0) return 0;
  return std::max<idx_t>(1, static_cast<idx_t>(std::llround(static_cast<double>(x) * scale)));
}

// part[n] from METIS: nparts parts of as equal a size and load as METIS manages.
std::vector<int> metis_parts(const Graph& g, int nparts, double imbalance, int seed) {
  std::vector<int> part(static_cast<size_t>(g.n), 0);
  if (nparts == 1) return part;
  int64_t wsum = 0, lsum = 0;
  for (int64_t x : g.weight) wsum += std::max<int64_t>(x, 0);
  for (int64_t x : g.load) lsum += std::max<int64_t>(x, 0);
  const double ws = scale_for(wsum, 1e9), ls = scale_for(lsum, 1e8);
  std::vector<idx_t> xadj{0}, adjncy, adjwgt, vwgt;
  for (int a = 0; a < g.n; ++a) {
    for (int b = 0; b < g.n; ++b) {
      const idx_t w = a == b ? 0 : scaled(g.w(a, b), ws);
      if (w == 0) continue;
      adjncy.push_back(b);
      adjwgt.push_back(w);
    }
    xadj.push_back(static_cast<idx_t>(adjncy.size()));
  }
  // Constraint 0: the unit count (each part needs exactly n / nparts units: the tolerance is
  // tight enough that one unit more breaks it); constraint 1: the expected load.
  const bool by_load = lsum > 0;
  idx_t ncon = by_load ? 2 : 1;
  for (int a = 0; a < g.n; ++a) {
    vwgt.push_back(1);
    if (by_load) vwgt.push_back(scaled(g.load[static_cast<size_t>(a)], ls));
  }
  const double per_part = static_cast<double>(g.n) / nparts;
  real_t ubvec[2] = {static_cast<real_t>(1.0 + 0.5 / per_part), static_cast<real_t>(imbalance)};
  idx_t options[METIS_NOPTIONS];
  METIS_SetDefaultOptions(options);
  options[METIS_OPTION_SEED] = seed;
  options[METIS_OPTION_NCUTS] = 8;  // best of 8 tries
  options[METIS_OPTION_NUMBERING] = 0;
  idx_t nv = g.n, np = nparts, cut = 0;
  std::vector<idx_t> out(static_cast<size_t>(g.n), 0);
  // Recursive bisection for few parts, k-way beyond (METIS's manual: k-way above 8 parts).
  auto call = nparts <= 8 ? METIS_PartGraphRecursive : METIS_PartGraphKway;
  const int rc = call(&nv, &ncon, xadj.data(), adjncy.empty() ? nullptr : adjncy.data(),
                      vwgt.data(), nullptr, adjwgt.empty() ? nullptr : adjwgt.data(), &np, nullptr,
                      ubvec, options, &cut, out.data());
  if (rc != METIS_OK)
    throw std::runtime_error("METIS failed (" + std::to_string(rc) + ") partitioning " +
                             std::to_string(g.n) + " vertices into " + std::to_string(nparts));
  for (int a = 0; a < g.n; ++a)
    part[static_cast<size_t>(a)] = static_cast<int>(out[static_cast<size_t>(a)]);
  return part;
}

// Sum of v's weights to the units of part p (v itself excluded).
int64_t conn(const Graph& g, const std::vector<int>& part, int v, int p) {
  int64_t s = 0;
  for (int u = 0; u < g.n; ++u)
    if (u != v && part[static_cast<size_t>(u)] == p) s += g.w(v, u);
  return s;
}

// Exact unit counts: while a part holds more than n / nparts units, move the unit (of any over-
// full part, to any under-full one) whose move loses the least co-activation inside parts.
int repair_counts(const Graph& g, int nparts, std::vector<int>& part) {
  const int target = g.n / nparts;
  std::vector<int> size(static_cast<size_t>(nparts), 0);
  for (int p : part) ++size[static_cast<size_t>(p)];
  int moves = 0;
  while (true) {
    int64_t best_gain = std::numeric_limits<int64_t>::min();
    int bv = -1, bq = -1;
    for (int v = 0; v < g.n; ++v) {
      const int p = part[static_cast<size_t>(v)];
      if (size[static_cast<size_t>(p)] <= target) continue;
      for (int q = 0; q < nparts; ++q) {
        if (size[static_cast<size_t>(q)] >= target) continue;
        const int64_t gain = conn(g, part, v, q) - conn(g, part, v, p);
        if (gain > best_gain) best_gain = gain, bv = v, bq = q;
      }
    }
    if (bv < 0) return moves;
    --size[static_cast<size_t>(part[static_cast<size_t>(bv)])];
    ++size[static_cast<size_t>(bq)];
    part[static_cast<size_t>(bv)] = bq;
    ++moves;
  }
}

std::vector<int64_t> part_loads(const Graph& g, int nparts, const std::vector<int>& part) {
  std::vector<int64_t> l(static_cast<size_t>(nparts), 0);
  for (int v = 0; v < g.n; ++v)
    l[static_cast<size_t>(part[static_cast<size_t>(v)])] += g.load[static_cast<size_t>(v)];
  return l;
}

// While the heaviest part exceeds imbalance * mean, swap one of its units with a lighter unit of
// another part, choosing among the swaps that lower the heavier of the two the one that loses
// the least co-activation inside parts. Stops when none helps.
int repair_loads(const Graph& g, int nparts, double imbalance, std::vector<int>& part) {
  int moves = 0;
  for (int iter = 0; iter < g.n * g.n; ++iter) {
    const auto loads = part_loads(g, nparts, part);
    const double mean =
        static_cast<double>(std::accumulate(loads.begin(), loads.end(), int64_t{0})) / nparts;
    const int p = static_cast<int>(std::max_element(loads.begin(), loads.end()) - loads.begin());
    const int64_t lp = loads[static_cast<size_t>(p)];
    if (static_cast<double>(lp) <= imbalance * mean) return moves;
    int64_t best_gain = std::numeric_limits<int64_t>::min();
    int bv = -1, bu = -1;
    for (int v = 0; v < g.n; ++v) {
      if (part[static_cast<size_t>(v)] != p) continue;
      for (int u = 0; u < g.n; ++u) {
        const int q = part[static_cast<size_t>(u)];
        const int64_t d = g.load[static_cast<size_t>(v)] - g.load[static_cast<size_t>(u)];
        if (q == p || d <= 0 || loads[static_cast<size_t>(q)] + d >= lp) continue;
        const int64_t gain = conn(g, part, v, q) - conn(g, part, v, p) + conn(g, part, u, p) -
                             conn(g, part, u, q) - 2 * g.w(v, u);
        if (gain > best_gain) best_gain = gain, bv = v, bu = u;
      }
    }
    if (bv < 0) return moves;
    std::swap(part[static_cast<size_t>(bv)], part[static_cast<size_t>(bu)]);
    moves += 2;
  }
  return moves;
}

// Splits g into nparts parts of exactly n / nparts units (METIS, then the repairs).
std::vector<int> split(const Graph& g, int nparts, const PartitionOptions& o, int& moves) {
  std::vector<int> part = metis_parts(g, nparts, o.imbalance, o.seed);
  moves += repair_counts(g, nparts, part);
  moves += repair_loads(g, nparts, o.imbalance, part);
  return part;
}

// The graph of `members` (expert ids) grouped into units of `unit` consecutive members.
Graph graph_of(const int64_t* counts, int E, const std::vector<int>& members, int unit) {
  Graph g;
  g.n = static_cast<int>(members.size()) / unit;
  g.load.assign(static_cast<size_t>(g.n), 0);
  g.weight.assign(static_cast<size_t>(g.n) * g.n, 0);
  for (size_t i = 0; i < members.size(); ++i) {
    const int a = static_cast<int>(i) / unit, ei = members[i];
    g.load[static_cast<size_t>(a)] += counts[static_cast<size_t>(ei) * E + ei];
    for (size_t j = 0; j < members.size(); ++j) {
      const int b = static_cast<int>(j) / unit, ej = members[j];
      if (a != b)
        g.weight[static_cast<size_t>(a) * g.n + b] += counts[static_cast<size_t>(ei) * E + ej];
    }
  }
  return g;
}

double load_ratio(const int64_t* counts, int E, const std::vector<int32_t>& rank_of) {
  const int P = rank_of.empty() ? 0 : *std::max_element(rank_of.begin(), rank_of.end()) + 1;
  std::vector<int64_t> l(static_cast<size_t>(P), 0);
  for (int e = 0; e < E; ++e)
    l[static_cast<size_t>(rank_of[static_cast<size_t>(e)])] +=
        counts[static_cast<size_t>(e) * E + e];
  const int64_t total = std::accumulate(l.begin(), l.end(), int64_t{0});
  if (total == 0) return 1.0;
  return static_cast<double>(*std::max_element(l.begin(), l.end())) * P /
         static_cast<double>(total);
}

}  // namespace

void check_partition_options(int E, const PartitionOptions& o) {
  const int G = o.nodes, R = o.ranks_per_node, RG = std::max(o.route_groups, 1);
  if (G < 1 || R < 1 || E % (G * R) != 0)
    throw UsageError(std::to_string(E) + " experts do not split over " + std::to_string(G) +
                     " nodes x " + std::to_string(R) + " ranks");
  const std::string rg_name =
      "route groups (--route-groups, or the run's moe.route_groups) = " + std::to_string(RG);
  if (RG > 1 && E % RG != 0)
    throw UsageError(rg_name + " do not divide the layer's " + std::to_string(E) + " experts");
  if (RG > 1 && RG % G != 0 && G % RG != 0)
    throw UsageError(rg_name + ": groups of " + std::to_string(E / RG) +
                     " experts cannot move whole between " + std::to_string(G) +
                     " nodes (the group and node counts must divide one another)");
}

LayerPartition partition_layer(const int64_t* counts, int E, const PartitionOptions& given) {
  check_partition_options(E, given);
  const int G = given.nodes, R = given.ranks_per_node, RG = std::max(given.route_groups, 1);
  LayerPartition out;
  // No placement puts a rank below its busiest expert's load. Where that alone is over
  // --imbalance, the bound every level works to is that floor: held to the tighter one, the node
  // level traded co-activation for a node balance that the ranks could not have anyway, and the
  // placement could cross nodes more than the contiguous one at the same max rank load.
  int64_t hottest = 0, total = 0;
  for (int e = 0; e < E; ++e) {
    hottest = std::max(hottest, counts[static_cast<size_t>(e) * E + e]);
    total += counts[static_cast<size_t>(e) * E + e];
  }
  out.load_floor =
      total > 0 ? static_cast<double>(hottest) * G * R / static_cast<double>(total) : 1.0;
  PartitionOptions o = given;
  o.imbalance = std::max(given.imbalance, out.load_floor);
  std::vector<int> node_of(static_cast<size_t>(E), 0);
  std::vector<int> all(static_cast<size_t>(E));
  std::iota(all.begin(), all.end(), 0);
  if (RG > 1 && G % RG == 0) {
    // Each group spans G / RG nodes, as in the contiguous layout: group g keeps its block of
    // nodes; inside the block its experts go to the block's nodes freely.
    const int per_group = E / RG, nodes_per_group = G / RG;
    for (int grp = 0; grp < RG; ++grp) {
      std::vector<int> members(static_cast<size_t>(per_group));
      std::iota(members.begin(), members.end(), grp * per_group);
      const auto part =
          split(graph_of(counts, E, members, 1), nodes_per_group, o, out.repair_moves);
      for (int i = 0; i < per_group; ++i)
        node_of[static_cast<size_t>(members[static_cast<size_t>(i)])] =
            grp * nodes_per_group + part[static_cast<size_t>(i)];
    }
  } else {
    const int unit = RG > 1 ? E / RG : 1;  // whole groups are the vertices
    const auto part = split(graph_of(counts, E, all, unit), G, o, out.repair_moves);
    for (int e = 0; e < E; ++e)
      node_of[static_cast<size_t>(e)] = part[static_cast<size_t>(e / unit)];
  }
  out.rank_of.assign(static_cast<size_t>(E), 0);
  for (int n = 0; n < G; ++n) {
    std::vector<int> members;
    for (int e = 0; e < E; ++e)
      if (node_of[static_cast<size_t>(e)] == n) members.push_back(e);
    const auto part = split(graph_of(counts, E, members, 1), R, o, out.repair_moves);
    for (size_t i = 0; i < members.size(); ++i)
      out.rank_of[static_cast<size_t>(members[i])] = n * R + part[i];
  }
  // Balanced nodes need not split into balanced ranks (a node's loads may not divide evenly):
  // then swap across nodes too, the cheapest load-lowering swaps first. Not with route groups,
  // whose experts must keep their nodes.
  if (R > 1 && RG <= 1 && load_ratio(counts, E, out.rank_of) > o.imbalance) {
    std::vector<int> part(out.rank_of.begin(), out.rank_of.end());
    out.repair_moves += repair_loads(graph_of(counts, E, all, 1), G * R, o.imbalance, part);
    out.rank_of.assign(part.begin(), part.end());
  }
  out.load_ratio = load_ratio(counts, E, out.rank_of);
  return out;
}

LayerTraffic layer_traffic(const Coactivation& c, int layer, const std::vector<int32_t>& rank_of,
                           int ranks_per_node) {
  const int E = c.num_experts, K = c.top_k;
  const int64_t* counts = c.layer_counts(layer);
  const int P = *std::max_element(rank_of.begin(), rank_of.end()) + 1;
  const int G = std::max(1, P / ranks_per_node);
  auto node = [&](int e) { return rank_of[static_cast<size_t>(e)] / ranks_per_node; };
  LayerTraffic t;
  double pairs = 0, in_node = 0, in_rank = 0;
  for (int i = 0; i < E; ++i)
    for (int j = i + 1; j < E; ++j) {
      const auto x = static_cast<double>(counts[static_cast<size_t>(i) * E + j]);
      pairs += x;
      if (node(i) == node(j)) in_node += x;
      if (rank_of[static_cast<size_t>(i)] == rank_of[static_cast<size_t>(j)]) in_rank += x;
    }
  t.pairs_in_node = pairs > 0 ? in_node / pairs : 0;
  t.pairs_in_rank = pairs > 0 ? in_rank / pairs : 0;
  const double away = static_cast<double>(G - 1) / G;
  const int64_t S = c.sample_tokens();
  if (K <= 2 && c.tokens > 0) {
    // At most one pair per token: a token reaches 2 nodes exactly when its pair is split, so the
    // counts (every token of the run) give the mean exactly.
    const double split_pairs = (pairs - in_node) / static_cast<double>(c.tokens);
    t.internode_rows_per_token = (1.0 + split_pairs) * away;
  } else if (S > 0) {  // k > 2: whole tokens' routing, from the sample
    std::vector<int32_t> node_of(static_cast<size_t>(E));
    for (int e = 0; e < E; ++e) node_of[static_cast<size_t>(e)] = node(e);
    const std::vector<int64_t> reached =
        plan::tokens_reaching_parts({c.layer_sample(layer), static_cast<size_t>(S * K)}, K, node_of,
                                    (P - 1) / ranks_per_node + 1);
    const int64_t nodes = std::accumulate(reached.begin(), reached.end(), int64_t{0});
    t.internode_rows_per_token = static_cast<double>(nodes) / static_cast<double>(S) * away;
  } else {
    t.internode_rows_per_token = std::numeric_limits<double>::quiet_NaN();
  }
  t.load_ratio = load_ratio(counts, E, rank_of);
  return t;
}

}  // namespace sy
