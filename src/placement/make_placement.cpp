#include "src/placement/make_placement.h"

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <optional>
#include <ostream>
#include <vector>

#include "src/core/durable_file.h"
#include "src/core/error.h"
#include "src/core/number_text.h"
#include "src/core/paths.h"
#include "src/placement/coactivation_file.h"
#include "src/placement/partition.h"
#include "src/plan/traffic.h"

namespace sy {

namespace {

// --route-groups, or the run's moe.route_groups, as a group count for `nodes` nodes.
int route_group_count(const std::string& opt, const RouteGroups& run, int nodes) {
  if (opt.empty()) return run.nodes ? nodes : static_cast<int>(run.count);
  if (opt == "nodes") return nodes;
  try {
    size_t used = 0;
    const int r = std::stoi(opt, &used);
    if (used == opt.size() && r >= 1) return r;
  } catch (const std::exception&) {
  }
  throw UsageError("--route-groups=" + opt + ": expected a positive integer or 'nodes'");
}

}  // namespace

ExpertPlacement make_placement(const PlacementOptions& o, std::ostream& out) {
  namespace fs = std::filesystem;
  if (o.nodes < 1) throw UsageError("--nodes=" + std::to_string(o.nodes) + ": must be >= 1");
  if (!(o.imbalance >= 1.0))
    throw UsageError("--imbalance=" + std::to_string(o.imbalance) + ": must be >= 1");
  const std::string cfg_path = (fs::path(o.run_dir) / "config.yaml").string();
  if (!fs::is_regular_file(cfg_path))
    throw UsageError("--run=" + o.run_dir + ": no config.yaml (not a run directory?)");
  // The run's own config, as a checkpoint stores it (an older switchyard may have written bytes
  // YAML does not allow in it).
  const Config cfg = parse_stored_config(read_config_text(cfg_path), cfg_path);
  const Coactivation c = read_coactivation((fs::path(o.run_dir) / "coactivation.h5").string());
  if (c.num_experts != cfg.moe.num_experts || c.num_layers != cfg.model.n_layers)
    throw UsageError(o.run_dir + ": coactivation.h5 (" + std::to_string(c.num_layers) +
                     " layers, " + std::to_string(c.num_experts) + " experts) does not match " +
                     "its config.yaml");
  if (c.tokens == 0) throw UsageError(o.run_dir + ": coactivation.h5 has counted no tokens yet");
  if (o.output.empty() == o.evaluate.empty())
    throw UsageError("give exactly one of --output (make a placement) and --evaluate (rate one)");
  std::optional<ExpertPlacement> given;
  if (!o.evaluate.empty()) {
    given = read_placement(o.evaluate);
    if (given->num_experts() != c.num_experts || given->num_layers() != c.num_layers)
      throw UsageError("--evaluate=" + o.evaluate + ": a placement of " +
                       std::to_string(given->num_layers()) + " layers x " +
                       std::to_string(given->num_experts()) + " experts, the run has " +
                       std::to_string(c.num_layers) + " x " + std::to_string(c.num_experts));
  }

  int R = o.ranks_per_node;
  if (R == 0 && given) {
    if (given->ep() % o.nodes != 0)
      throw UsageError("--nodes=" + std::to_string(o.nodes) + " does not divide the placement's " +
                       "ep = " + std::to_string(given->ep()));
    R = given->ep() / o.nodes;
  } else if (R == 0) {
    if (cfg.parallel.ep % o.nodes != 0)
      throw UsageError("--nodes=" + std::to_string(o.nodes) + " does not divide the run's " +
                       "parallel.ep = " + std::to_string(cfg.parallel.ep) +
                       "; give --ranks-per-node (EP ranks per node)");
    R = static_cast<int>(cfg.parallel.ep) / o.nodes;
  }
  const int E = c.num_experts, G = o.nodes;
  // G x R in 64 bits: in int, 65536 x 65536 wrapped to 0 (E % 0, SIGFPE) and 46341 x 46341 to a
  // negative rank count. Every EP rank holds at least one expert, so P is refused past E before
  // anything computes with it as an int.
  const int64_t ranks = int64_t{G} * R;
  if (given && given->ep() != ranks)
    throw UsageError("--evaluate=" + o.evaluate +
                     ": a placement for ep = " + std::to_string(given->ep()) + ", not " +
                     std::to_string(G) + " nodes x " + std::to_string(R) + " ranks");
  if (R < 1 || ranks > E || E % ranks != 0)
    throw UsageError("--nodes=" + std::to_string(G) + " x --ranks-per-node=" + std::to_string(R) +
                     " = " + std::to_string(ranks) + " EP ranks " +
                     (ranks > E ? "are more than" : "do not divide") + " the " + std::to_string(E) +
                     " experts");
  const int P = static_cast<int>(ranks);
  PartitionOptions po;
  po.nodes = G;
  po.ranks_per_node = R;
  po.imbalance = o.imbalance;
  po.route_groups = route_group_count(o.route_groups, cfg.moe.route_groups, G);
  po.seed = o.seed;
  check_partition_options(E, po);  // before the table, not after it
  std::error_code ec;
  if (!o.output.empty() && fs::is_directory(o.output, ec))
    throw UsageError("--output=" + o.output + " is a directory; give the placement file to write");
  if (const std::string problem = files::special_file_problem(o.output); !problem.empty())
    throw UsageError("--output " + problem);
  // A directory that is missing or takes no files, as `data prepare` refuses it: the table was
  // printed first, then "create '<output>.tmp' failed".
  if (!o.output.empty()) files::check_output_file(o.output);
  for (const char* input : {"config.yaml", "coactivation.h5"})
    refuse_output_as_input(o.output, (fs::path(o.run_dir) / input).string(), "placement",
                           "the placement");

  const ExpertPlacement before = ExpertPlacement::contiguous(c.num_layers, E, P);
  std::vector<std::vector<int32_t>> rank_of;
  const int64_t tokens_per_step = cfg.train.global_batch * cfg.model.seq_len;
  // what one inter-node row costs per step and layer: its payloads forward and backward
  const std::array<double, 4> payloads = plan::a2a_payload_row_bytes(cfg.model.d_model, c.top_k);
  const double row_bytes = std::accumulate(payloads.begin(), payloads.end(), 0.0);
  double bytes_before = 0, bytes_after = 0;
  out << "co-activation of " << o.run_dir << ": steps " << c.first_step + 1 << ".." << c.last_step
      << ", " << c.tokens << " tokens per layer, sample of " << c.sample_tokens()
      << " tokens (step " << c.sample_step << ")\n";
  if (c.recounted_steps > 0 || c.uncounted_steps > 0)  // after resumes (their logs said which)
    out << "note: of these steps the counts hold up to " << c.recounted_steps << " twice and up to "
        << c.uncounted_steps << " not at all (resumes from checkpoints the counts did not match)\n";
  // Counts of another routing than the one placed for (route_groups: nodes resolved for another
  // node count): the rows below are those of the counted routing (QA: "4 groups whole" and a
  // prediction past the one row per token that routing allows, unsaid).
  const CoactivationRouting target =
      CoactivationRouting::of(po.route_groups, cfg.moe.route_groups_topk);
  if (!c.routing.known() && target.groups > 1)  // a file from before the routing was recorded
    out << "note: the counts do not record the routing they were gathered under (a file from "
        << "before switchyard recorded it): the rows below take them as routed with "
        << target.describe() << "\n";
  if (c.routing.known() && !c.routing.same_selection(target))
    out << "note: the counts were routed with " << c.routing.describe() << "; a run routed with "
        << target.describe() << " selects other experts: the rows below are those of the counted "
        << "routing\n";
  if (c.routing.other_steps > 0)
    out << "note: up to " << c.routing.other_steps << " of these steps were routed otherwise than "
        << "with " << c.routing.describe()
        << " (a resume changed moe.route_groups, or they were counted before the routing was "
        << "recorded)\n";
  if (given && po.route_groups > 1) {  // what a run with those groups says of it (QA: rated
                                       // here, then refused by training)
    std::vector<int> node_of_ep_rank(static_cast<size_t>(P));
    for (int p = 0; p < P; ++p) node_of_ep_rank[static_cast<size_t>(p)] = p / R;
    try {
      check_placement_route_groups(*given, RouteGroups{po.route_groups, false}, node_of_ep_rank,
                                   "parallel.expert_placement=" + o.evaluate);
    } catch (const UsageError& e) {
      out << "note: training with " << po.route_groups << " routing groups refuses this "
          << "placement: " << e.what() << "\n";
    }
  }
  out << (given ? "rating " + o.evaluate + ": " : std::string("placing "))  //
      << E << " experts on " << G << " nodes x " << R << " EP ranks";
  if (!given)
    out << " (max rank load " << o.imbalance << "x the mean"
        << (po.route_groups > 1 ? ", " + std::to_string(po.route_groups) + " routing groups whole"
                                : std::string())
        << ")";
  out << "\nexpected inter-node rows per token (hierarchical all-to-all), contiguous -> placed:\n";
  std::vector<std::string> comments;
  for (int l = 0; l < c.num_layers; ++l) {
    LayerPartition part;
    if (given) {
      for (int e = 0; e < E; ++e) part.rank_of.push_back(given->rank_of(l, e));
    } else {
      part = partition_layer(c.layer_counts(l), E, po);
    }
    std::vector<int32_t> contiguous(static_cast<size_t>(E));
    for (int e = 0; e < E; ++e) contiguous[static_cast<size_t>(e)] = before.rank_of(l, e);
    const LayerTraffic a = layer_traffic(c, l, contiguous, R);
    const LayerTraffic b = layer_traffic(c, l, part.rank_of, R);
    bytes_before += a.internode_rows_per_token * static_cast<double>(tokens_per_step) * row_bytes;
    bytes_after += b.internode_rows_per_token * static_cast<double>(tokens_per_step) * row_bytes;
    const double cut = a.internode_rows_per_token > 0
                           ? 100.0 * (1.0 - b.internode_rows_per_token / a.internode_rows_per_token)
                           : 0.0;
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "layer %d: %.3f -> %.3f rows/token (%+.1f%%) | co-selected pairs in a node "
                  "%.1f%% -> %.1f%%, in a rank %.1f%% -> %.1f%% | max rank load %.2fx -> %.2fx",
                  l, a.internode_rows_per_token, b.internode_rows_per_token, -cut,
                  100.0 * a.pairs_in_node, 100.0 * b.pairs_in_node, 100.0 * a.pairs_in_rank,
                  100.0 * b.pairs_in_rank, a.load_ratio, b.load_ratio);
    std::string line = buf;
    if (!given && part.load_ratio > o.imbalance + 1e-9) {
      char why[128];
      std::snprintf(why, sizeof why, "the busiest expert alone is %.2fx the mean rank load",
                    part.load_floor);
      line += std::string(" (over --imbalance: ") +
              (part.load_floor > o.imbalance + 1e-9
                   ? why
                   : "no swap found that lowers it without breaking a node") +
              ")";
    }
    out << "  " << line << "\n";
    comments.push_back(line);
    rank_of.push_back(std::move(part.rank_of));
  }
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "predicted inter-node bytes per step: %.2f MB -> %.2f MB (%lld tokens per step, "
                "%lld bytes per inter-node row and layer)",
                bytes_before / 1e6, bytes_after / 1e6, static_cast<long long>(tokens_per_step),
                static_cast<long long>(row_bytes));
  const std::string total = buf;
  out << total << "\n";
  if (cfg.moe.capacity_factor)  // (QA: 1.35-1.4x the measured internode_bytes, unsaid)
    out << "note: these bytes are those of every counted assignment, before capacity drops any; "
        << "the run drops rows past moe.capacity_factor " << number_text(*cfg.moe.capacity_factor)
        << ", so its internode_bytes are lower by what it drops\n";
  if (given) return *given;
  comments.insert(comments.begin(), "made from " + o.run_dir + " (steps " +
                                        std::to_string(c.first_step + 1) + ".." +
                                        std::to_string(c.last_step) + ")");
  comments.push_back(total);
  ExpertPlacement p = ExpertPlacement::from_ranks(std::move(rank_of), P, o.output);
  p.ranks_per_node = R;
  write_placement(o.output, p, comments);
  out << "wrote " << o.output << " (use it with --set parallel.expert_placement=" << o.output
      << " --set parallel.ep=" << P
      << (R < P ? "; on nodes emulated on one host also parallel.ranks_per_node, so that each "
                  "node holds " +
                      std::to_string(R) + " EP ranks as it was made for"
                : std::string())
      << ")\n";
  return p;
}

}  // namespace sy
