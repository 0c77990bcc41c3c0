// The hierarchical expert all-to-all written down as a PLAN: index lists and per-peer row counts,
// for a transport that moves rows with its own primitives (the GPU exchange of
// comm/gpu_exchange.h: gather kernels, MPI between nodes, NCCL inside a node). The route is the
// one of comm/exchange_hier.h: a token crosses the network at most ONCE per destination node, to
// the rank with this rank's local index there (its forwarder), which fans it out inside its
// node to the ranks holding the token's experts, once per rank.
//
// Letters: P EP ranks, G nodes, R = P/G ranks per node, L = E/P local experts, N tokens here,
// K top-k, W row width, S rows sent across (a token once per destination node, own node
// included), X rows this rank forwards, F (forwarded row, receiving rank) pairs, Mr rows received.
//
//   dispatch  a[S,W]   = x[a_send_token]                       gather
//             xr[X,W]  = all-to-all over the node peers         a_send_rows[G] -> a_recv_rows[G]
//             b[F,W]   = xr[b_send_row]                        gather
//             recv[Mr] = all-to-all inside the node             b_send_rows[R] -> b_recv_rows[R]
//   combine   the adjoint, each sum in a fixed order:
//             b'[F,W]  = all-to-all inside the node, back       b_recv_rows -> b_send_rows
//             xr'[X,W] = sum of b' rows by b_row_begin/b_row_pos  (CSR over the X rows)
//             a'[S,W]  = all-to-all over the node peers, back   a_recv_rows -> a_send_rows
//             out[N,W] = sum of a' rows by a_token_begin/a_token_pos (CSR over the N tokens; a
//                        token that went nowhere gets a zero row)
//
// The node peers are the EP ranks with this rank's local index, one per node, ranked by node;
// the node's ranks are ranked by local index (RouteGroups builds both communicators). Received
// rows come in source order: by source node then source token after the first all-to-all, by
// forwarding rank then forwarded row after the second.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "comm/exchange_detail.h"
#include "comm/mpi.h"

namespace sy::comm {

class Watchdog;

// The communicators of a plan over one EP group. Collective over ep_comm. Throws UsageError when
// E is not a multiple of P or the nodes hold different numbers of EP ranks.
struct RouteGroups {
  RouteGroups(MPI_Comm ep_comm, const std::vector<int>& node_of_ep_rank, int num_experts);
  detail::Topology topo;
  int num_experts = 0;
  Comm node;   // the EP ranks of this node, ranked by local index (size R)
  Comm peers;  // the EP ranks with this local index, ranked by node (size G)
  Comm ep;     // a private duplicate of the EP group (the layout's record exchange)
};

struct RoutePlan {
  int64_t num_tokens = 0;  // N
  int top_k = 0;           // K
  // Across the nodes.
  std::vector<int64_t> a_send_token;   // [S] token of each row, by destination node, then token
  std::vector<int64_t> a_send_rows;    // [G] rows to each node's forwarder
  std::vector<int64_t> a_recv_rows;    // [G] rows from each source node (this rank forwards)
  std::vector<int64_t> a_token_begin;  // [N+1] CSR: the rows of token n in a_send_token
  std::vector<int64_t> a_token_pos;    // [S]   (ascending: destination node order)
  // Inside the node.
  std::vector<int64_t> b_send_row;   // [F] forwarded row of each, by receiving rank, then row
  std::vector<int64_t> b_send_rows;  // [R] rows to each local rank
  std::vector<int64_t> b_recv_rows;  // [R] rows from each forwarder of this node
  std::vector<int64_t> b_row_begin;  // [X+1] CSR: the copies of forwarded row x in b_send_row
  std::vector<int64_t> b_row_pos;    // [F]   (ascending: receiving rank order)
  // Per received row, the LOCAL expert (0..L-1) of each of its K slots when held here, else -1.
  std::vector<int32_t> recv_topk_local;  // [Mr*K]

  int64_t num_sent() const { return static_cast<int64_t>(a_send_token.size()); }          // S
  int64_t num_forwarded() const { return static_cast<int64_t>(b_row_begin.size()) - 1; }  // X
  int64_t num_fanned() const { return static_cast<int64_t>(b_send_row.size()); }          // F
  int64_t num_recv() const;                                                               // Mr
  // Rows this rank sends to other nodes, and to other ranks of its node (traffic per call).
  int64_t internode_rows = 0, intranode_rows = 0;
};

// Collective over the EP group. topk_idx[N*K]: the GLOBAL expert of each (token, slot), or -1
// for an assignment that goes nowhere (dropped by capacity). Every rank passes the same K.
RoutePlan make_route_plan(const RouteGroups& groups, std::span<const int32_t> topk_idx,
                          int64_t num_tokens, int top_k, Watchdog* watchdog);

}  // namespace sy::comm
