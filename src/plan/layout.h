// A parallel layout as the planner evaluates it (SPEC section 4: world = dp * tp = edp * ep * etp,
// nodes as blocks of ranks_per_node consecutive ranks, comm/groups.h's rank order), and the
// enumeration of every valid layout of a config on a number of ranks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/config/config.h"

namespace sy::plan {

struct PlanLayout {
  int64_t world = 1;
  int64_t ranks_per_node = 1;  // node of global rank r = r / ranks_per_node
  int64_t tp = 1, ep = 1, etp = 1;
  // train.micro_batch of the layout: the config's, or (enumerate_layouts) the largest divisor of
  // global_batch / dp not above it, when dp * micro_batch does not divide the global batch.
  int64_t micro_batch = 1;
  bool zero1 = false;
  bool hierarchical = false;  // the expert all-to-all (resolved: never kAuto)
  InternodeKind internode = InternodeKind::kUcx;
  // The config sets parallel.ranks_per_node (emulated nodes): set_flags names the layout's nodes
  // even when it has one, or the run would keep the config's.
  bool pin_nodes = false;
  // device: cuda: the GPU exchange is always hierarchical with MPI between nodes
  // (comm/gpu_exchange.h); parallel.a2a and parallel.internode do not apply, so set_flags omits
  // them and enumerate_layouts offers no variants of them.
  bool gpu = false;

  int64_t dp() const { return world / tp; }
  int64_t edp() const { return world / (ep * etp); }
  int64_t nodes() const { return (world + ranks_per_node - 1) / ranks_per_node; }
  // Nodes an EP group spans (G) and the EP ranks of the group on each node (ep / G); EP rank p
  // of group 0 is global rank p * etp, and EP ranks on one node are consecutive.
  int64_t ep_nodes() const;
  int64_t ep_ranks_per_node() const { return ep / ep_nodes(); }
  // Whether the group of `size` ranks at stride `stride` (dp: stride tp; edp: stride ep*etp;
  // tp: stride 1) spans more than one node.
  bool spans_nodes(int64_t stride, int64_t size) const;

  // "dp=2 tp=1 ep=2 etp=1 zero1 hier/ucx"
  std::string describe() const;
  // The overrides that run it: "--set parallel.tp=1 --set parallel.ep=2 ..." (with
  // parallel.ranks_per_node when it spans nodes).
  std::string set_flags() const;
};

// cfg with the layout's micro_batch: what every prediction of the layout reads.
Config config_for(const Config& cfg, const PlanLayout& lay);

// The layout `cfg.parallel` asks for on `world` ranks (a2a: auto resolved as the trainer does:
// hierarchical when the EP group spans more than one node). Its nodes are the trainer's:
// parallel.ranks_per_node when set (emulated nodes), else the hosts, `host_ranks` ranks on each
// (at most world).
PlanLayout layout_of_config(const Config& cfg, int64_t world, int64_t host_ranks);

// The number of groups a token may choose from, R of SPEC section 1 (moe.route_groups, `nodes`
// resolved to the nodes the EP group spans), and M.
int64_t route_groups_of(const Config& cfg, const PlanLayout& lay);

// Why `lay` cannot run `cfg` ("" when it can): the divisibility rules of SPEC 4 and
// comm::validate_layout, train.global_batch against dp * micro_batch, the route-group rules with
// `nodes` resolved, equal EP ranks per node for hierarchical, and the GPU path's limits.
std::string layout_problem(const Config& cfg, const PlanLayout& lay);

// Every valid layout of cfg on `world` ranks (ranks_per_node per node): tp, ep, etp, ZeRO-1 on
// and off (when a data-parallel group exists), flat or hierarchical (when the EP group spans
// nodes) with either inter-node transport; the micro-batch lowered where dp needs it (the loss
// does not depend on it). Invalid combinations are left out.
std::vector<PlanLayout> enumerate_layouts(const Config& cfg, int64_t world, int64_t ranks_per_node);

}  // namespace sy::plan
