// Expert placement from measured co-activation (issue 17): per layer, a balanced partition of the
// E experts onto the EP ranks that keeps experts tokens choose together on one node (then on one
// rank), so fewer token rows cross the network (comm/README.md, "Three bounds on cross-node
// traffic").
//
// The partitioner is METIS (Debian's libmetis-dev): the experts are a graph whose vertex weights
// are (1, the expert's load) and whose edge weights are co-activation counts; METIS cuts it into
// the nodes' shares minimising the cut weight (the co-selected pairs split over two nodes), then
// each node's share into its ranks. METIS balances within a tolerance; a rank must hold exactly
// E / ep experts, so its result is repaired to exact counts by moving the experts whose move
// costs the least cut, and then, if the expected load of a rank exceeds the stated imbalance,
// by the cheapest load-reducing swaps (inside the nodes first; across them when a node's experts
// cannot split into balanced ranks). Where one expert alone is over the imbalance, its load is
// the bound instead (nodes and ranks balanced to what the ranks can reach, no further). With
// group-limited routing (moe.route_groups), groups are the vertices of the node level, so only
// whole groups move between nodes.
//
// Letters: E experts, G nodes, R EP ranks per node (ep = G * R), K top-k.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/placement/coactivation_file.h"

namespace sy {

struct PartitionOptions {
  int nodes = 1;            // G
  int ranks_per_node = 1;   // R
  double imbalance = 1.10;  // allowed (max expected rank load) / (mean rank load)
  int route_groups = 1;     // > 1: groups of E / route_groups experts stay whole on nodes
  int seed = 1;             // METIS's seed (the result is deterministic for a seed)
};

struct LayerPartition {
  std::vector<int32_t> rank_of;  // [E] EP rank of each expert
  double load_ratio = 1.0;       // max expected rank load / mean (loads from the counts' diagonal)
  double load_floor = 1.0;       // the busiest expert's load / the mean rank load: no placement
                                 // has a lower load_ratio (the bound used where it is over
                                 // PartitionOptions::imbalance)
  int repair_moves = 0;          // experts moved after METIS to meet the exact counts and loads
};

// counts[E*E]: a layer's co-activation (coactivation_file.h; diagonal = loads). Throws UsageError
// when the options cannot work (E not divisible by G * R, groups that do not fit the nodes).
// UsageError when `o` cannot partition E experts: nodes x ranks that do not divide them, route
// groups that do not divide them or cannot move whole between the nodes (partition_layer checks
// the same; callers check first, before any work or output).
void check_partition_options(int E, const PartitionOptions& o);
LayerPartition partition_layer(const int64_t* counts, int E, const PartitionOptions& o);

// What a placement of one layer does to the traffic, from the recorded routing.
struct LayerTraffic {
  // Expected rows a token sends across nodes per exchange in the hierarchical all-to-all (once per
  // destination node other than its own; a token's own node is any of the G with equal chance):
  // the mean of (distinct nodes among its experts) * (G - 1) / G, over every counted token from
  // the pair counts when k <= 2 (exact), over the sampled tokens when k > 2.
  double internode_rows_per_token = 0;
  double pairs_in_node = 0;  // share of the co-selected expert pairs whose experts share a node
  double pairs_in_rank = 0;  // ... share a rank
  double load_ratio = 1.0;   // max expected rank load / mean
};
LayerTraffic layer_traffic(const Coactivation& c, int layer, const std::vector<int32_t>& rank_of,
                           int ranks_per_node);

}  // namespace sy
