// `switchyard bench a2a`: the expert-parallel token exchange (comm/alltoall.h), modelled on
// nccl-tests' alltoall_perf. One row per (bytes per rank, skew, algorithm, inter-node transport):
//
//   bytes/rank  the expert input this rank contributes: N tokens x K slots x W floats, i.e. what
//               a top-k dispatch moves before any deduplication (N is derived from it)
//   time        median over --iters of the slowest rank's dispatch (us); comb_us the same for the
//               combine; layout_us the same for three layouts (counts + records)
//   xfer_us     of a dispatch, mean over ranks: time moving rows between ranks (flat: the
//               MPI_Alltoallv; hier: the inter-node stage, waiting for the peers included)
//   sync_us     of a dispatch, mean over ranks: hier's node barriers (waiting for node-mates)
//   algbw       bytes/rank / time (GB/s);  busbw = algbw (P-1)/P  (nccl-tests' all-to-all rule)
//   inter B     payload bytes one dispatch sent to other nodes, mean per rank
//   inter msgs  messages one dispatch sent across node boundaries, mean per rank
//   #wrong      elements and handle fields that differ from an independent reference (every
//               rank regenerates every rank's routing from the seed), summed over ranks; checked
//               on an untimed exchange before the timed ones
//
// Routing: each token picks K distinct experts, expert e with probability proportional to
// (e + 1)^-skew (Zipf; skew 0 = uniform, larger = a few hot experts on the first EP ranks).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <vector>

#include "comm/alltoall.h"

namespace sy {

struct A2aBenchOptions {
  int ranks_per_node = 0;       // 0: the nodes MPI reports; > 0: emulated nodes
  int64_t min_bytes = 1 << 20;  // per rank; sizes double from min to max
  int64_t max_bytes = 16 << 20;
  int top_k = 4;
  int experts = 0;       // 0: 2 per rank
  int64_t width = 1024;  // row elements (fp32)
  std::vector<double> skews = {0.0};
  int iters = 20, warmup = 5;
  std::vector<comm::A2aAlgo> algos = {comm::A2aAlgo::kFlat, comm::A2aAlgo::kHierarchical};
  std::vector<comm::Internode> internodes = {comm::Internode::kUcx, comm::Internode::kMpi};
  double timeout_s = 120;  // watchdog on every wait
  unsigned seed = 1;
};

// Collective over MPI_COMM_WORLD (MPI initialised by the caller). Rank 0 prints the header and
// the table to `out`. Returns #wrong summed over every rank and row (0 = all correct). Throws
// sy::UsageError for options that cannot work (naming the option).
int64_t run_a2a_bench(const A2aBenchOptions& opt, std::ostream& out);

}  // namespace sy
