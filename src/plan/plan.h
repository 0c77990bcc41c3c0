// `switchyard plan`: every valid layout of a config on a cluster, its predicted step time and
// memory per rank, ranked by tokens/s; and the node sweep (how the all-to-all share and tokens/s
// per rank change as the expert layer spans more nodes). Pure computation: the command
// (app/cmd_plan.cpp) reads the files and prints what these return.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/config/config.h"
#include "src/plan/cluster.h"
#include "src/plan/layout.h"
#include "src/plan/memory.h"
#include "src/plan/routing.h"
#include "src/plan/step_time.h"

namespace sy::plan {

struct Evaluation {
  PlanLayout layout;
  StepTime time;
  MemoryEstimate memory;
  double memory_available = 0;  // bytes per rank
  std::string problem;          // "" when it runs and fits; else why not
  bool runs = true;             // false: the trainer refuses it (a layout or index problem), not
                                // only memory this machine may not have
  double tokens_per_s = 0;      // global_batch * seq_len / step time
  bool fits() const { return problem.empty(); }
};

// One layout: its time, its memory and whether it fits in memory_per_rank (0 = unknown: no
// memory check) and in the index types (memory.h).
Evaluation evaluate(const Config& cfg, const PlanLayout& lay, const Cluster& cluster,
                    const RoutingStats& routing, const MemoryInputs& in, double memory_per_rank);

struct PlanResult {
  std::vector<Evaluation> ranked;   // fitting layouts, best tokens/s first
  std::vector<Evaluation> dropped;  // valid layouts that do not fit (with the reason)
};
PlanResult plan_layouts(const Config& cfg, int64_t world, const Cluster& cluster,
                        const RoutingStats& routing, const MemoryInputs& in,
                        double memory_per_rank);

// The ranked table (the first `top` rows), then the dropped layouts grouped by reason.
std::string format_plan(const Config& cfg, const PlanResult& r, int64_t world,
                        const Cluster& cluster, const RoutingStats& routing, int top);
// One evaluation as a table block (the config's own layout: `switchyard plan --this`).
std::string format_evaluation(const Evaluation& e);
nlohmann::json evaluation_json(const Evaluation& e);

struct SweepPoint {
  int64_t nodes = 0, ranks = 0;
  bool found = false;              // a fitting layout whose EP group spans all `nodes` nodes exists
  int64_t valid = 0, fitting = 0;  // layouts that run on that many ranks / that also fit
  Evaluation best;                 // the fastest such layout
  double a2a_share = 0;            // all-to-all / step time
  double tokens_per_s_per_rank = 0;
};
// For each node count: the fastest fitting layout whose expert layer spans every node, with
// memory_per_rank(ranks) the memory a rank has in a run of that many ranks.
std::vector<SweepPoint> sweep_nodes(const Config& cfg, const std::vector<int64_t>& nodes,
                                    const Cluster& cluster, const RoutingStats& routing,
                                    const MemoryInputs& in,
                                    const std::function<double(int64_t)>& memory_per_rank);
std::string format_sweep(const std::vector<SweepPoint>& points, const Cluster& cluster);

// "12.3 GiB", "512 MiB", "1.2e+21 B (1.1e+12 GiB)" for absurd sizes.
std::string format_bytes(double bytes);

}  // namespace sy::plan
