// `switchyard placement --run DIR --nodes N [--ranks-per-node R] --output placement.yaml`: an
// expert placement from a run's measured co-activation (the work is in
// src/placement/make_placement.h).
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "app/commands.h"
#include "app/validators.h"
#include "src/core/error.h"
#include "src/core/h5.h"
#include "src/placement/make_placement.h"

namespace sy::app {

void add_placement_command(CLI::App& root, std::vector<Command>& out) {
  auto o = std::make_shared<PlacementOptions>();
  auto* cmd = root.add_subcommand(
      "placement",
      "Place experts on EP ranks so that experts chosen together by tokens share a node: per "
      "layer, "
      "a METIS partition of the run's co-activation (<run>/coactivation.h5), balanced in expected "
      "load; prints the expected inter-node rows per token before and after and writes a file "
      "for parallel.expert_placement");
  cmd->add_option("--run", o->run_dir, "Run directory (holds coactivation.h5 and config.yaml)")
      ->required();
  cmd->add_option("--nodes", o->nodes, "Nodes the placement is for")
      ->required()
      ->check(positive_number());
  cmd->add_option("--ranks-per-node", o->ranks_per_node,
                  "EP ranks per node (default: the run's parallel.ep / --nodes)")
      ->check(positive_number());
  cmd->add_option("-o,--output", o->output, "The placement file to write");
  cmd->add_option("--evaluate", o->evaluate,
                  "Instead of making a placement, rate this placement file against the run's "
                  "co-activation (expected inter-node rows per token, per layer)");
  cmd->add_option(
         "--imbalance", o->imbalance,
         "Allowed expected load of the busiest EP rank over the mean (nodes are balanced to the "
         "same bound; where the busiest expert alone is over it, its load is the bound)")
      ->capture_default_str()
      ->check(number_in(1.0, 100.0, "[1, 100]"));
  cmd->add_option("--route-groups", o->route_groups,
                  "Routing groups to keep whole on nodes: an integer or 'nodes' (default: the "
                  "run's moe.route_groups)")
      ->check(non_empty("give an integer or 'nodes'"));
  cmd->add_option("--seed", o->seed, "METIS's seed")->capture_default_str();
  out.push_back({cmd, [o] {
                   h5::print_no_library_errors();  // reads coactivation.h5
                   make_placement(*o, std::cout);
                   return static_cast<int>(kExitOk);
                 }});
}

}  // namespace sy::app
