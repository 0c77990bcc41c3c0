// `switchyard plan`: its options; the planning itself is src/plan/io/plan_command.h.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "app/commands.h"
#include "app/validators.h"
#include "src/core/h5.h"
#include "src/plan/io/plan_command.h"
#include "src/plot/plot.h"

namespace sy::app {

void add_plan_command(CLI::App& root, std::vector<Command>& out) {
  auto a = std::make_shared<plan::PlanRequest>();
  auto* cmd = root.add_subcommand(
      "plan",
      "Predict step time and memory per rank of every parallel layout of a config on a cluster "
      "and rank them by tokens/s (the cost model: src/plan/, clusters/README.md)");
  cmd->add_option("-c,--config", a->config, "Experiment config (YAML)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", a->overrides, "Override a config key (repeatable)");
  cmd->add_option("-k,--cluster", a->cluster, "Cluster file (clusters/*.yaml)")
      ->required()
      ->check(CLI::ExistingFile);
  auto* ranks = cmd->add_option("--ranks", a->ranks, "Plan for this many ranks")
                    ->check(integer_in(1, int64_t{1} << 30));
  cmd->add_option("--nodes", a->nodes, "Plan for these node counts (comma-separated)")
      ->delimiter(',')
      ->check(integer_in(1, int64_t{1} << 24))
      ->excludes(ranks);
  cmd->add_option("--routing", a->routing,
                  "Routing to assume: 'uniform', or a run directory (its metrics.jsonl's "
                  "expert_load and, when present, coactivation.h5)")
      ->capture_default_str();
  cmd->add_option("--top", a->top, "Rows of the ranked table")
      ->capture_default_str()
      ->check(integer_in(1, 100000));
  cmd->add_option("--memory-gib", a->memory_gib,
                  "Memory per rank in GiB (default: the cluster's memory_bytes)")
      ->check(number_in(1e-6, 1e9, "[1e-6, 1e9]"));  // 1e308 GiB was inf bytes in the tables
  cmd->add_flag("--this", a->this_layout,
                "Only the config's own layout (parallel.*), every term shown");
  cmd->add_flag("--json", a->json, "Print JSON instead of tables");
  auto* sweep = cmd->add_option(
      "--sweep", a->sweep,
      "nodes=1,2,4,...: the fastest layout whose expert layer spans each node count: "
      "tokens/s per rank and the all-to-all share");
  // The sweep prints its own table: the options of the ranked tables do not apply to it.
  for (const char* name : {"--ranks", "--nodes", "--top", "--this", "--json"})
    sweep->excludes(cmd->get_option(name));
  cmd->add_option("--png", a->png, "With --sweep: draw the sweep into this PNG (gnuplot)")
      ->needs(sweep);
  cmd->add_option("--gnuplot", a->gnuplot, "gnuplot executable")->capture_default_str();
  out.push_back({cmd, [a] {
                   // A --gnuplot that cannot run is refused before the sweep and before the
                   // PNG's directory is made (it was found after both, exit 1).
                   if (!a->png.empty()) check_gnuplot(a->gnuplot);
                   h5::print_no_library_errors();  // reads coactivation.h5 and token files
                   return plan::run_plan(*a, std::cout, std::cerr);
                 }});
}

}  // namespace sy::app
