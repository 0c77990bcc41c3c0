// What the planner and the trainer's memory check read from the machine and from files: cluster
// files, a run directory's routing statistics, a token file's declared sizes (without reading
// its tokens), this host's memory. src/plan itself does no I/O.
//
// Co-activation (`<run dir>/coactivation.h5`, optional): the trainer's file
// (src/placement/coactivation_file.h): `/counts` int64 [L, E, E] (i != j: tokens whose top-k
// held both i and j; the diagonal: tokens that chose i), a root attribute `tokens` (tokens
// counted per layer), and `/sample` int32 [L, S, K] (the top-k of S whole tokens). The reader
// also takes, as its documented minimal interface, a dataset `/coactivation` (or the file's only
// dataset) of shape [L, E, E] or [E, E] holding counts or fractions, normalised by an attribute
// `tokens` on the dataset or the root, else by sum(diagonal) / top_k, else taken as fractions.
// A missing file means "not measured" (the planner then uses the loads alone); a file that does
// not match the config's experts is a UsageError naming the file.
#pragma once

#include <cstdint>
#include <string>

#include "src/config/config.h"
#include "src/plan/cluster.h"
#include "src/plan/routing.h"

namespace sy::plan {

// Reads and parses a cluster file; UsageError naming it when missing or malformed.
Cluster load_cluster(const std::string& path);

// "uniform", or a run directory: the mean expert_load of its metrics.jsonl train lines, and
// its coactivation.h5 when present. UsageError when the directory, its metrics or their shapes
// do not match cfg (num_experts).
RoutingStats load_routing(const std::string& spec, const Config& cfg);

// The co-activation of `path` (see above): pair fractions of tokens [L][E*E] and, when the file
// has one, the token sample [L][S*K]; everything empty when the file does not exist.
struct CoactivationStats {
  std::vector<std::vector<double>> pairs;
  std::vector<std::vector<int32_t>> sample;
  int64_t sample_k = 0;
};
CoactivationStats read_coactivation_stats(const std::string& path, int64_t E, int64_t top_k);

// Declared element counts of a token file's /train and /val (the dataspace only: nothing is
// read, so a file that declares 2^40 never-written tokens costs nothing). ok = false when the
// file or a dataset cannot be inspected (read_token_file then reports the problem).
struct TokenExtents {
  bool ok = false;
  double train = 0, val = 0;
};
TokenExtents token_file_extents(const std::string& path);

// This host's memory for processes: physical RAM (sysconf), lowered to the cgroup's limit
// (v2 memory.max, v1 memory.limit_in_bytes) when one is set.
double host_memory_bytes();

}  // namespace sy::plan
