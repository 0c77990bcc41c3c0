// What the planner and the trainer's memory check read from the machine and from files: cluster
// files, a run directory's routing statistics, a token file's declared sizes (without reading
// its tokens), this host's memory. src/plan itself does no I/O.
//
// Co-activation (`<run dir>/coactivation.h5`, optional): the trainer's file, its format and its
// one reader in src/placement/coactivation_file.h (sy::read_coactivation). The planner takes its
// pair counts as fractions of the tokens counted and its sample of whole tokens' top-k. A missing
// file means "not measured" (the planner then uses the loads alone); a file that is not the
// trainer's co-activation file, or counts another number of experts than the config, is a
// UsageError naming the file.
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

// The co-activation file at `path` (see above) into r.pairs ([L][E*E] pair fractions of tokens;
// left empty when the file has counted no tokens yet), r.sample ([L][S*K]; empty when the file
// holds no sample) and r.sample_k. False, and r untouched, when the file does not exist.
// UsageError when it is of another expert count E or top-k K than the config's.
bool load_coactivation(const std::string& path, int64_t E, int64_t K, RoutingStats& r);

// Declared element counts of a token file's /train and /val (the dataspace only: nothing is
// read, so a file that declares 2^40 never-written tokens costs nothing). ok = false when the
// file or a dataset cannot be inspected (open_token_file then reports the problem).
struct TokenExtents {
  bool ok = false;
  double train = 0, val = 0;
};
TokenExtents token_file_extents(const std::string& path);

// This host's memory for processes: physical RAM (sysconf), lowered to the cgroup limits of this
// process (cgroup_memory_limit of /proc/self/cgroup under /sys/fs/cgroup).
double host_memory_bytes();

// The lowest memory limit of the cgroups `proc_self_cgroup` (the text of /proc/self/cgroup) names
// and of their ancestors, under `root` (/sys/fs/cgroup): v2 memory.max of the "0::<path>" line,
// v1 memory/<path>/memory.limit_in_bytes of the memory controller's line. A job's limit sits in
// a nested group (SLURM's ConstrainRAMSpace, systemd, containers), not at the root. 0: none.
double cgroup_memory_limit(const std::string& proc_self_cgroup, const std::string& root);

}  // namespace sy::plan
