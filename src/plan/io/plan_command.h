// `switchyard plan` (app/cmd_plan.cpp parses its options into a PlanRequest): every layout of a
// config on a cluster ranked by predicted tokens/s (plan.h), the config's own layout (--this), or
// the node sweep (--sweep, optionally drawn with gnuplot). No MPI: the planner only computes.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace sy::plan {

struct PlanRequest {
  std::string config, cluster, routing = "uniform", sweep, png, gnuplot = "gnuplot";
  std::vector<std::string> overrides;
  int64_t ranks = 0;           // --ranks (0: not given)
  std::vector<int64_t> nodes;  // --nodes
  int top = 10;
  double memory_gib = 0;  // --memory-gib (0: the cluster's memory_bytes, else this host's / ranks)
  bool this_layout = false, json = false;
};

// "nodes=1,2,4,8" -> {1, 2, 4, 8}; UsageError naming what is not a node count >= 1.
std::vector<int64_t> parse_sweep(const std::string& spec);

// Runs the plan `r` asks for: tables or JSON to `out`, notes to `err`. Returns the exit code: 0,
// or 2 (kExitUsage) where no layout runs on the ranks asked or none fits in the memory per rank
// (the table or sweep still printed), or with --this where the trainer would refuse the config's
// layout (one that only needs more memory is a report, 0). UsageError for a request that cannot be
// answered (more nodes than the cluster has, a chart over an input).
int run_plan(const PlanRequest& r, std::ostream& out, std::ostream& err);

}  // namespace sy::plan
