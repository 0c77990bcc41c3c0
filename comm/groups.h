// Process groups for MoE parallel folding (Megatron-Core's "MoE parallel folding", SPEC section 4).
//
// The same world is folded two ways:
//   attention / dense parts:  world = dp * tp,         tp fastest:
//       global_rank = dp_rank * tp + tp_rank
//   experts:                  world = edp * ep * etp,  etp fastest:
//       global_rank = (edp_rank * ep + ep_rank) * etp + etp_rank,   edp = world / (ep * etp)
// Expert i (of E) lives on EP rank i / (E / ep); the etp ranks of one EP rank each hold a shard.
//
// Node structure: by default a node is what MPI_COMM_TYPE_SHARED reports; with
// ranks_per_node > 0 nodes are emulated as blocks of consecutive ranks (node = rank /
// ranks_per_node), which lets one machine stand in for a cluster. `node_peers` joins the ranks
// with the same local index on every node (the inter-node leg of the hierarchical all-to-all).
#pragma once

#include <string>
#include <vector>

#include "comm/mpi.h"

namespace sy::comm {

// Requested degrees (parallel.* keys). ranks_per_node = 0: nodes as MPI reports them.
struct ParallelSizes {
  int tp = 1;
  int ep = 1;
  int etp = 1;
  int ranks_per_node = 0;
};

// Checks every divisibility rule of a layout and throws sy::UsageError with one message naming
// the first offending key, e.g. "parallel.tp=3 does not divide the world size 4". Call it before
// creating any communicator (ProcessGroups calls the world part itself).
void validate_layout(int world_size, int tp, int ep, int etp, int num_experts, int n_heads,
                     int ffn_hidden, int ranks_per_node);

// The part of validate_layout that depends only on the world size (no model dimensions).
void validate_world_layout(int world_size, const ParallelSizes& sizes);

// Coordinates of one global rank in both foldings (pure arithmetic, no MPI).
struct RankCoords {
  int dp_rank = 0, tp_rank = 0;                 // attention folding
  int edp_rank = 0, ep_rank = 0, etp_rank = 0;  // expert folding
};
RankCoords rank_coords(int global_rank, int tp, int ep, int etp);

struct Layout {
  int world_size = 1, world_rank = 0;
  int tp = 1, dp = 1, ep = 1, etp = 1, edp = 1;
  RankCoords coords;  // of this rank

  // Nodes. node_of_rank[r] is the node index of global rank r (nodes numbered by their lowest
  // global rank). Whether every node holds the same number of ranks is checked where it matters
  // (comm::even_over_nodes: the hierarchical all-to-all, the trainer's EP groups).
  bool emulated_nodes = false;
  int num_nodes = 1, node_idx = 0, local_rank = 0, node_size = 1;
  std::vector<int> node_of_rank;  // [world_size]
};

// Per global rank: its dp/tp/ep/etp/edp coordinates, node and the experts it holds (expert i on
// EP rank i / (E / ep)), one line per rank. num_experts must be divisible by layout.ep. With
// `contiguous_experts` false (an expert placement decides, per layer) the experts are left to the
// caller: the lines name none.
std::string describe(const Layout& layout, int num_experts, bool contiguous_experts = true);

// Owns every communicator of the layout. All are created collectively over `world` (every rank
// of it must construct ProcessGroups with the same sizes).
class ProcessGroups {
 public:
  // Throws sy::UsageError (before any communicator exists, identically on every rank) when the
  // sizes do not fit the world size.
  ProcessGroups(MPI_Comm world, const ParallelSizes& sizes);

  const Layout& layout() const { return layout_; }

  const Comm& world() const { return world_; }  // a duplicate of the communicator passed in
  const Comm& dp() const { return dp_; }        // size dp: same tp_rank
  const Comm& tp() const { return tp_; }        // size tp: same dp_rank
  const Comm& ep() const { return ep_; }        // size ep: same edp_rank and etp_rank
  const Comm& etp() const { return etp_; }      // size etp: same edp_rank and ep_rank
  const Comm& edp() const { return edp_; }      // size edp: same ep_rank and etp_rank
  const Comm& node() const { return node_; }    // the ranks of this node, by global rank
  const Comm& node_peers() const { return node_peers_; }  // same local_rank on every node

 private:
  Layout layout_;
  Comm world_, dp_, tp_, ep_, etp_, edp_, node_, node_peers_;
};

}  // namespace sy::comm
