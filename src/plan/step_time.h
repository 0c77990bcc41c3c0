// The time of one optimizer step of a layout, split the way the planner's table shows it. Every
// part is a sum of alpha-beta or rate terms (step_time.cpp names each):
//
//   compute     a mean rank's own work at its own rate: its GEMMs (FLOPs of src/train/flops.h, per
//               part: attention with its projections, experts at the mean rank's assignments,
//               dense = router + shared experts + LM head), each at the cluster's rate for its
//               smallest dimension; the elementwise passes over the saved activations; the fixed
//               cost per layer and micro-batch; the optimizer's pass over its parameters
//   a2a         the expert all-to-all per MoE layer and micro-batch: layout, dispatch and combine
//               forward, dispatch and combine backward; split into the intra-node and the
//               inter-node legs (flat: both at once, the slower decides; hierarchical: one after
//               the other); and the wait inside it (below)
//   tp, etp     tensor-parallel all-reduces of activations (4 per layer and micro-batch), the
//               expert-tensor-parallel gathers and reduce-scatters
//   grad sync   the data-parallel gradient reduce-scatter + all-gather per bucket (ring model;
//               the same bytes with ZeRO-1, which gathers parameters instead of gradients)
//
// Waits: the ranks meet at every collective, so a phase between two of them lasts as long as its
// slowest rank, and a mean rank spends the difference inside the collective that ends the phase
// (where the trainer's a2a_ms counts it). A phase's length is
//   max(turns * own(mean rank), own(busiest rank))
// with own() a rank's compute at its own rate: the busiest rank is the one whose experts got the
// most assignments (equal to the mean under uniform routing); `turns` is 1 on hardware of its
// own per rank, and on a one_host cluster the number of ranks that take turns on each core
// (world * threads / cores: a rank, once scheduled, runs its phase on its threads, so the others
// wait). The expert phase ends in the all-to-all's combine; every other phase in the next
// all-to-all call when ep > 1 (except attention's in the tp all-reduce when tp > 1), else in
// the tp all-reduces or the gradient sync.
//
// With moe.overlap_chunks = c > 1 on a cluster that overlaps communication (the CUDA path), the
// all-to-all and the expert GEMMs of a layer pipeline over c chunks:
// max(a, e) + min(a, e) / c instead of a + e.
#pragma once

#include "src/config/config.h"
#include "src/plan/cluster.h"
#include "src/plan/layout.h"
#include "src/plan/routing.h"

namespace sy::plan {

struct StepTime {
  // compute of a mean rank, seconds per step
  double attention = 0, experts = 0, dense = 0, elementwise = 0, overhead = 0, optimizer = 0;
  // communication, seconds per step
  double a2a_intra = 0, a2a_inter = 0;
  double a2a_wait = 0;  // inside the all-to-all, for the ranks whose phase lasts longer
  double tp = 0, etp = 0, grad_sync = 0;
  double sync_wait = 0;      // the same inside the tp all-reduces or the gradient sync
  double overlap_saved = 0;  // subtracted: the part of the all-to-all hidden behind experts
  // expected bytes a (mean) rank moves through the all-to-all per step (the trainer's
  // a2a_internode_bytes / a2a_intranode_bytes counters: dispatch and combine payloads)
  double a2a_inter_bytes = 0, a2a_intra_bytes = 0;

  double compute() const {
    return attention + experts + dense + elementwise + overhead + optimizer;
  }
  double a2a() const { return a2a_intra + a2a_inter + a2a_wait - overlap_saved; }
  double sync() const { return tp + etp + grad_sync + sync_wait; }
  double total() const { return compute() + a2a() + sync(); }
};

// One rank's compute figures and the ranks that take turns on its cores (the comment above): the
// cluster itself and 1 unless one_host, where a rank of `world` runs t = max(1, cores / world)
// threads at t / cores of the host's figures (times thread_efficiency when t > 1) and
// world * t / cores ranks share each core (at least 1; cores 0: the figures divided by world,
// no turns). Not one_host: the figures as they are, no turns, and with `cores` (a node's) a
// rank runs t = max(1, cores / ranks on its node) threads, which only its memory counts.
struct RankCompute {
  Cluster k;
  double turns = 1;
  double threads = 1;  // t (1 unless cores is set)
};
RankCompute rank_compute(const Cluster& cluster, int64_t world);

// Seconds of one GEMM of `flops` FLOPs whose smallest dimension is `min_dim` on the cluster.
double gemm_seconds(const Cluster& k, double flops, double min_dim);

// Ring collectives over a group of p ranks moving `bytes` (the full buffer) on link `l`, with
// `messages` separate calls (buckets): all-reduce 2(p-1) alpha + 2 (p-1)/p bytes/beta;
// reduce-scatter and all-gather half of that each.
double ring_allreduce_seconds(const Link& l, double p, double bytes, double messages = 1);
double ring_gather_seconds(const Link& l, double p, double bytes, double messages = 1);

StepTime predict_step(const Config& cfg, const PlanLayout& lay, const Cluster& cluster,
                      const RoutingStats& routing);

}  // namespace sy::plan
