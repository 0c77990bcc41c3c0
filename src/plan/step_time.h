// The time of one optimizer step on the busiest rank of a layout, split the way the planner's
// table shows it. Every part is a sum of alpha-beta or rate terms (step_time.cpp names each):
//
//   compute     the rank's GEMMs (FLOPs of src/train/flops.h, per part: attention with its
//               projections, experts at the busiest rank's assignments, dense = router + shared
//               experts + LM head), each at the cluster's rate for its smallest dimension; the
//               elementwise passes over the saved activations and the optimizer's pass over its
//               parameters at the memory bandwidth
//   a2a         the expert all-to-all per MoE layer and micro-batch: layout, dispatch and combine
//               forward, dispatch and combine backward; split into the intra-node and the
//               inter-node legs (flat: both at once, the slower decides; hierarchical: one after
//               the other)
//   tp, etp     tensor-parallel all-reduces of activations (4 per layer and micro-batch), the
//               expert-tensor-parallel gathers and reduce-scatters
//   grad sync   the data-parallel gradient reduce-scatter + all-gather per bucket (ring model;
//               the same bytes with ZeRO-1, which gathers parameters instead of gradients)
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
  // compute, seconds per step
  double attention = 0, experts = 0, dense = 0, elementwise = 0, optimizer = 0;
  // communication, seconds per step
  double a2a_intra = 0, a2a_inter = 0;
  double tp = 0, etp = 0, grad_sync = 0;
  double overlap_saved = 0;  // subtracted: the part of the all-to-all hidden behind experts
  // expected bytes a (mean) rank moves through the all-to-all per step (the trainer's
  // a2a_internode_bytes / a2a_intranode_bytes counters: dispatch and combine payloads)
  double a2a_inter_bytes = 0, a2a_intra_bytes = 0;

  double compute() const { return attention + experts + dense + elementwise + optimizer; }
  double a2a() const { return a2a_intra + a2a_inter - overlap_saved; }
  double sync() const { return tp + etp + grad_sync; }
  double total() const { return compute() + a2a() + sync(); }
};

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
