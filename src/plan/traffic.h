// Rows the expert all-to-all moves for one MoE layer and one micro-batch under a layout, and the
// assignments that reach the experts of a rank: the quantities both the step time (alpha-beta,
// the busiest rank decides) and the memory (buffers at the busiest rank) are made of.
//
// What moves (comm/README.md): each rank routes its micro-batch and moves its tensor-parallel
// slice of Ns = N / tp tokens. Flat: a token goes once to every EP rank holding one of its experts
// (itself included, which costs no transfer). Hierarchical: once over the network to every other
// node holding one of its experts (to the rank with the same local index, the forwarder), then
// inside the node from the forwarders to the ranks that hold the experts. The combine sends the
// same rows back.
//
// Letters: N = micro_batch * seq_len, Ns = N / tp, P = ep, G nodes of the EP group, Rn = P / G EP
// ranks per node, L = E / P experts per EP rank.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>

#include "src/config/config.h"
#include "src/plan/layout.h"
#include "src/plan/routing.h"

namespace sy::plan {

struct LayerTraffic {
  double tokens = 0;  // N: tokens every rank routes
  double slice = 0;   // Ns: tokens this rank moves
  int64_t nodes = 1;  // G
  int64_t ep_ranks_per_node = 1;

  // Flat, rows per call. Sent: the mean over EP ranks of the rows a rank sends to other ranks of
  // its node / of other nodes. Received: the busiest EP rank (the one most tokens reach).
  double flat_sent_intra = 0, flat_sent_inter = 0;
  double flat_sent_total = 0;  // rows a rank packs in all (itself included): the staging buffer
  double flat_recv_intra = 0, flat_recv_inter = 0;

  // Hierarchical, rows per call. inter: sent by a rank to other nodes (mean) / received by the
  // busiest forwarder from other nodes; intra: copied through shared memory to the busiest
  // receiver from its node's forwarders (and the same amount the other way in the combine).
  double hier_sent_inter = 0, hier_recv_inter = 0;
  double hier_intra = 0;
  double hier_intra_mean = 0;  // the same at a mean receiver (the counters' expectation)
  // Hierarchical buffer rows (exchange_hier.h): xrecv (a forwarder's rows from every node),
  // xsend (rows packed for the other nodes), at the busiest node.
  double hier_xrecv = 0, hier_xsend = 0;

  // Rows reaching this rank from the exchange (Mo, itself included): mean and busiest at the
  // buffer quantile; after the etp all-gather (M = etp * Mo).
  double recv_mean = 0, recv_quantile = 0;
  // Assignments the rank's local experts run (A, after capacity): the busiest rank's (time: every
  // rank waits for it; with measured steps, each step's busiest averaged) and at the buffer
  // quantile (memory); a mean rank's (its own expert time).
  double assign_busiest = 0, assign_quantile = 0, assign_mean = 0;
};

// Bytes per token row of the payloads one MoE layer's expert all-to-all moves in a training step,
// fp32 as the trainer sends them (src/model/moe_parallel.cpp; the layout's int64 records come on
// top): the forward's dispatch (the row and its K gates) and combine (the expert output), the
// backward's dispatch (the output's gradient) and combine (the row's and its K gates' gradients).
inline std::array<double, 4> a2a_payload_row_bytes(int64_t d_model, int64_t top_k) {
  const auto C = static_cast<double>(d_model), K = static_cast<double>(top_k);
  return {4 * (C + K), 4 * C, 4 * C, 4 * (C + K)};
}

// The traffic of `layer` (the routing statistics are per layer) under `lay`.
LayerTraffic layer_traffic(const Config& cfg, const PlanLayout& lay, const RoutingStats& routing,
                           int64_t layer);

// f(traffic, layers) for every distinct layer: measured routing may differ per layer, uniform
// does not; the layers past the measured ones repeat the last (`layers` counts them). Never a
// loop over model.n_layers, which may be 1e12 in a config the memory check must refuse.
template <class F>
void for_each_distinct_layer(const Config& cfg, const PlanLayout& lay, const RoutingStats& r,
                             F&& f) {
  const auto L = static_cast<double>(cfg.model.n_layers);
  const int64_t distinct =
      std::min<int64_t>(cfg.model.n_layers, r.uniform() ? 1 : static_cast<int64_t>(r.load.size()));
  for (int64_t l = 0; l < distinct; ++l)
    f(layer_traffic(cfg, lay, r, l), l + 1 < distinct ? 1.0 : L - static_cast<double>(l));
}

}  // namespace sy::plan
