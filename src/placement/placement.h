// Expert placement (issue 17): which EP rank holds which logical expert, per layer.
//
// Without a placement, expert e lives on EP rank e / L (L = E / ep local experts, SPEC section 4).
// A placement (`parallel.expert_placement: placement.yaml`, written by `switchyard placement`)
// gives every layer its own balanced map instead: each EP rank still holds exactly L experts,
// but which ones is free, so that experts tokens choose together can share a node. Only the
// mapping changes: checkpoints keep the logical expert order of SPEC section 5 (global tensors),
// initial values stay a function of the logical index (SPEC 2), and the math is the same up to
// the order of a few sums, so any placement resumes from any checkpoint.
//
// Inside a rank, its experts sit in ascending logical order: local expert j of rank r is the
// j-th smallest expert r holds. The expert exchange (comm/alltoall.h) knows nothing of
// placements: it sees each expert's SLOT, r * L + j, which it maps to (rank r, local j) as for
// the contiguous layout.
//
// The file (configs/README.md, "Expert placement files"):
//   format: switchyard-expert-placement
//   version: 1
//   num_experts: 8
//   ep: 4                     # the EP ranks it is for (parallel.ep must match)
//   ranks_per_node: 2         # what it was optimised for (informative)
//   layers:                   # one entry per layer, each one list per EP rank
//     - [[0, 5], [1, 4], [2, 7], [3, 6]]
//
// Letters: E experts, P EP ranks, L = E / P experts per rank, NL layers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "src/config/config.h"

namespace sy {

class ExpertPlacement {
 public:
  // Every layer contiguous: expert e on rank e / L.
  static ExpertPlacement contiguous(int num_layers, int num_experts, int ep);
  // rank_of[l][e]: the EP rank of expert e in layer l. Throws UsageError (naming `what`, the
  // file) when a rank holds other than E / P experts or an entry is out of range.
  static ExpertPlacement from_ranks(std::vector<std::vector<int32_t>> rank_of, int ep,
                                    const std::string& what);

  int num_layers() const { return static_cast<int>(rank_of_.size()); }
  int num_experts() const { return E_; }
  int ep() const { return P_; }
  int local_experts() const { return P_ > 0 ? E_ / P_ : 0; }  // L
  int ranks_per_node = 0;                                     // informative (0: unknown)

  int rank_of(int layer, int expert) const { return rank_of_[idx(layer)][idx(expert)]; }
  // [L] the experts rank `rank` holds in layer `layer`, ascending (local order).
  const std::vector<int32_t>& experts_on(int layer, int rank) const {
    return experts_on_[idx(layer)][idx(rank)];
  }
  // [E] the exchange slot (rank * L + local index) of every expert of `layer`.
  const std::vector<int32_t>& slots(int layer) const { return slot_[idx(layer)]; }
  bool is_contiguous() const;

  bool operator==(const ExpertPlacement& o) const { return rank_of_ == o.rank_of_ && P_ == o.P_; }

 private:
  static size_t idx(int i) { return static_cast<size_t>(i); }
  int E_ = 0, P_ = 0;
  std::vector<std::vector<int32_t>> rank_of_;                  // [NL][E]
  std::vector<std::vector<std::vector<int32_t>>> experts_on_;  // [NL][P][L]
  std::vector<std::vector<int32_t>> slot_;                     // [NL][E]
};

// "layer 0: [0 5] [1 4] | [2 7] [3 6]; layer 1: ..." (ranks, '|' between nodes of
// ranks_per_node ranks when > 0), the first max_layers layers, for the start-up log.
std::string describe_placement(const ExpertPlacement& p, int ranks_per_node, int max_layers = 4);

// Reads a placement file. Throws UsageError naming the file and the problem: not a regular file,
// YAML syntax (with the line), missing or unknown keys, a repeated or missing expert, an expert
// out of range, a rank with the wrong number of experts.
ExpertPlacement read_placement(const std::string& path);

// Writes `p` (atomically: a temporary file renamed). `comments`: lines written as '#' comments
// above the layers (what the placement is expected to save).
void write_placement(const std::string& path, const ExpertPlacement& p,
                     const std::vector<std::string>& comments = {});

// The run's placement when cfg.parallel.expert_placement names one, else null. Throws UsageError
// naming parallel.expert_placement and the file when it cannot be used with cfg: a bad file, its
// num_experts, layer count or ep differing from the config's, or device: cuda (the GPU backend
// keeps the contiguous layout).
std::shared_ptr<const ExpertPlacement> load_expert_placement(const Config& cfg);

// With group-limited routing on (moe.route_groups R > 1, or `nodes`: R = the number of nodes),
// a placement may only move whole groups between nodes: every group (experts g*E/R ..
// (g+1)*E/R - 1) must lie on no more nodes than under the contiguous layout, or a token could
// reach more nodes than route_groups_topk allows. node_of_ep_rank[P]: the node of each EP rank.
// Throws UsageError naming `what` (the key and its file) and the first group that spreads.
void check_placement_route_groups(const ExpertPlacement& p, const RouteGroups& groups,
                                  const std::vector<int>& node_of_ep_rank, const std::string& what);

}  // namespace sy
