#include "src/plan/io/plan_command.h"

#include <algorithm>
#include <filesystem>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/config/config.h"
#include "src/core/error.h"
#include "src/core/number_text.h"
#include "src/core/paths.h"
#include "src/plan/io/plan_inputs.h"
#include "src/plan/plan.h"
#include "src/plot/plot.h"

namespace sy::plan {

// "nodes=1,2,4,8" -> {1, 2, 4, 8}
std::vector<int64_t> parse_sweep(const std::string& spec) {
  const std::string prefix = "nodes=";
  if (spec.rfind(prefix, 0) != 0)
    throw UsageError("--sweep '" + spec + "': expected nodes=N1,N2,... (e.g. nodes=1,2,4,8)");
  std::vector<int64_t> out;
  std::stringstream in(spec.substr(prefix.size()));
  for (std::string item; std::getline(in, item, ',');) {
    int64_t n = 0;
    if (!parse_decimal(item, n) || n < 1)
      throw UsageError("--sweep: '" + item + "' is not a node count >= 1");
    out.push_back(n);
  }
  if (out.empty()) throw UsageError("--sweep '" + spec + "': no node counts");
  return out;
}

int run_plan(const PlanRequest& a, std::ostream& out, std::ostream& err) {
  const Config cfg = load_config(a.config, a.overrides);
  if (!a.png.empty()) {  // the chart must not land on a file the plan reads
    std::vector<std::string> inputs = {a.config, a.cluster, cfg.data.path};
    if (a.routing != "uniform")
      for (const char* f : {"metrics.jsonl", "coactivation.h5"})
        inputs.push_back((std::filesystem::path(a.routing) / f).string());
    for (const std::string& input : inputs)
      refuse_output_as_input(a.png, input, "plan", "the chart", "--png");
  }
  const Cluster cluster = load_cluster(a.cluster);
  const RoutingStats routing = load_routing(a.routing, cfg);
  // A --json row says the routing it was priced with, as the table's header does (QA).
  const auto routed = [&](nlohmann::json row) {
    row["routing"] = routing.source;
    return row;
  };
  MemoryInputs in;
  in.base_bytes = cluster.base_bytes;
  const TokenExtents tokens = token_file_extents(cfg.data.path);
  if (tokens.ok) {
    in.train_tokens = tokens.train;
    in.val_tokens = tokens.val;
    in.data_name = "'" + cfg.data.path + "'";
  }
  // The cluster's `nodes` is the most a layout may span (clusters/README.md).
  std::vector<int64_t> asked = a.nodes;
  if (!a.sweep.empty()) asked = parse_sweep(a.sweep);
  std::sort(asked.begin(), asked.end());  // `--nodes 4,1,2,2`: each count once, smallest first
  asked.erase(std::unique(asked.begin(), asked.end()), asked.end());
  for (int64_t n : asked)
    if (n > cluster.nodes)
      throw UsageError((a.sweep.empty() ? "--nodes " : "--sweep nodes=") + std::to_string(n) +
                       ": the cluster file '" + a.cluster + "' has " +
                       std::to_string(cluster.nodes) + " node(s) (its `nodes`)");
  if (a.ranks > cluster.max_ranks())
    throw UsageError("--ranks " + std::to_string(a.ranks) + ": the cluster file '" + a.cluster +
                     "' has " + std::to_string(cluster.max_ranks()) + " ranks (nodes x " +
                     "ranks_per_node)");
  if (!tokens.ok)  // train holds the token file per rank: a plan without it may fit where it won't
    err << "note: data.path '" << cfg.data.path
        << "' is not a readable token file; its tokens are not counted in the memory per "
           "rank (train refuses the run until it is)\n";
  // Memory per rank: --memory-gib, the cluster's figure, or (memory_bytes: 0, a cluster emulated
  // on this host) this host's memory over every rank of the run.
  auto memory_for = [&](int64_t world) {
    if (a.memory_gib > 0) return a.memory_gib * 1073741824.0;
    if (cluster.memory_bytes > 0) return cluster.memory_bytes;
    return host_memory_bytes() / static_cast<double>(world);
  };

  if (!a.sweep.empty()) {
    const std::vector<SweepPoint> points =
        sweep_nodes(cfg, asked, cluster, routing, in, memory_for);
    out << format_sweep(points, cluster);
    if (std::none_of(points.begin(), points.end(), [](const SweepPoint& p) { return p.found; })) {
      err << "error: no node count asked has a layout that fits in the memory per rank\n";
      return sy::kExitUsage;
    }
    if (!a.png.empty()) {
      std::vector<double> x;
      std::vector<sy::XySeries> series = {{"tokens/s per rank", {}, false},
                                          {"all-to-all share of the step (%)", {}, true}};
      for (const auto& p : points) {
        if (!p.found) continue;
        x.push_back(static_cast<double>(p.nodes));
        series[0].y.push_back(p.tokens_per_s_per_rank);
        series[1].y.push_back(100 * p.a2a_share);
      }
      sy::PlotOptions po;
      po.gnuplot = a.gnuplot;
      sy::plot_xy(a.png, cfg.run.name + " on " + cluster.name + ": expert layer over N nodes",
                  "nodes the expert layer spans", "tokens/s per rank", "all-to-all share (%)", x,
                  series, po);
      out << "wrote " << a.png << "\n";
    }
    return sy::kExitOk;
  }

  std::vector<int64_t> worlds;
  if (a.ranks > 0) worlds.push_back(a.ranks);
  for (int64_t n : asked) worlds.push_back(n * cluster.ranks_per_node);
  if (worlds.empty()) worlds.push_back(cluster.max_ranks());

  if (a.this_layout) {
    // Exit 2 where the trainer would refuse the config's layout on a rank count asked (a layout
    // or index problem, as a plan with no runnable layout does); one that only needs more
    // memory than the cluster file's is a report, exit 0.
    bool runs = true;
    nlohmann::json all = nlohmann::json::array();
    if (!a.json) out << "# routing " << routing.source << "\n";  // as the table's header says
    // The config's own layout: on one host, parallel.ranks_per_node 0 makes every rank one node,
    // whatever --nodes asked (QA: --nodes 2 planned "1 node(s) of 4", unsaid).
    if (cluster.one_host && cfg.parallel.ranks_per_node == 0 &&
        std::any_of(asked.begin(), asked.end(), [](int64_t n) { return n > 1; }))
      err << "note: on the one host of '" << a.cluster << "' the config's "
          << "parallel.ranks_per_node 0 runs every rank as one node; --set "
          << "parallel.ranks_per_node=" << cluster.ranks_per_node << " plans the nodes asked "
          << "(emulated, as training would run them)\n";
    for (int64_t world : worlds) {
      // The hosts: one for one_host, else the cluster's nodes.
      const int64_t host_ranks = cluster.one_host ? world : cluster.ranks_per_node;
      const Evaluation e = evaluate(cfg, layout_of_config(cfg, world, host_ranks), cluster, routing,
                                    in, memory_for(world));
      if (a.json) {
        all.push_back(routed(evaluation_json(e)));
      } else {
        out << format_evaluation(e);
      }
      runs = runs && e.runs;
    }
    if (a.json) out << all.dump(1) << "\n";
    if (!runs)  // said on stderr as every exit 2 is (a script reading it saw nothing, QA)
      err << "error: the config's layout does not run on the ranks asked ("
          << (a.json ? "its row's `problem` says why" : "its `cannot run` line says why") << ")\n";
    return runs ? sy::kExitOk : sy::kExitUsage;
  }
  // --json: the table's rows (the first --top that fit, best first), then every layout that does
  // not, its `problem` saying why, as the table's summary does.
  nlohmann::json all = nlohmann::json::array();
  bool any_layout = false, any_fits = false;
  for (int64_t world : worlds) {
    const PlanResult r = plan_layouts(cfg, world, cluster, routing, in, memory_for(world));
    any_layout = any_layout || !r.ranked.empty() || !r.dropped.empty();
    any_fits = any_fits || !r.ranked.empty();
    if (a.json) {
      const size_t shown = std::min(r.ranked.size(), static_cast<size_t>(a.top));
      for (size_t i = 0; i < shown; ++i) all.push_back(routed(evaluation_json(r.ranked[i])));
      for (const auto& e : r.dropped) all.push_back(routed(evaluation_json(e)));
    } else {
      out << format_plan(cfg, r, world, cluster, routing, a.top) << "\n";
    }
  }
  if (a.json) out << all.dump(1) << "\n";
  if (!any_layout)  // also beside the table, whose notes say why (stderr had nothing: QA)
    err << "error: no layout of this config can run on the ranks asked ("
        << (a.json ? "the table without --json names the counts it can use"
                   : "the table's notes say why and the counts it can use")
        << ")\n";
  // No layout at all runs on the ranks asked, or none fits in the memory per rank: the question
  // was not one the config can answer (the table said why); a script must not read it as a plan.
  if (any_layout && !any_fits)
    err << "error: no layout of this config fits in the memory per rank (each one's problem "
           "says what it needs)\n";
  return any_fits ? sy::kExitOk : sy::kExitUsage;
}

}  // namespace sy::plan
