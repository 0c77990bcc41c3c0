// `switchyard placement`: an expert placement for a run's measured co-activation
// (<run dir>/coactivation.h5, <run dir>/config.yaml), per layer partitioned by METIS
// (partition.h), written as a placement file (placement.h) with the expected traffic before
// (contiguous layout) and after, per layer, printed and kept as comments in the file.
#pragma once

#include <iosfwd>
#include <string>

#include "src/placement/placement.h"

namespace sy {

struct PlacementOptions {
  std::string run_dir;      // holds coactivation.h5 and config.yaml
  int nodes = 0;            // G (required)
  int ranks_per_node = 0;   // R EP ranks per node; 0: the run's parallel.ep / G
  std::string output;       // the placement file to write, or:
  std::string evaluate;     // a placement file to rate against the run's co-activation
  double imbalance = 1.10;  // allowed max expected rank load over the mean
  // Group-limited routing the placement must respect: "" = the run's moe.route_groups,
  // else an integer or "nodes".
  std::string route_groups;
  int seed = 1;  // METIS's seed
};

// Writes o.output and returns the placement made, or (o.evaluate) only rates the given one.
// Throws UsageError naming the option or file that cannot be used.
ExpertPlacement make_placement(const PlacementOptions& o, std::ostream& out);

}  // namespace sy
