// The hierarchical token exchange (internal to comm/; make_exchange builds it). DeepEP's order:
// a token crosses the network first, ONCE per destination node, to the rank with the same local
// index there (its "forwarder"), which hands it on inside the node through shared memory; the
// combine reduces inside the node before crossing back. comm/README.md has the full argument;
// the letters are those of comm/alltoall.h plus
//   g, r   this rank's node and local index;  h a source node, g' a destination node
//   S      rows this rank sends (a token once per destination node, own node included)
//   X      rows this rank holds as forwarder (from every source node with its local index)
//   F      (forwarder row, receiving local rank) pairs: X rows fanned out inside the node
//
// Buffers: one MPI shared-memory window segment per rank, also registered with UCX, holding three
// sets (used by successive calls in turn, see README "synchronisation") of
//   xrecv[X,W]   rows from source node h at xrecv_begin[h] (own node's packed locally); the
//                combine reduces into it in place and sends section h back
//   ybuf[Mr,W]   combine: a copy of y, read by the node's forwarders
//   xsend[S',W]  dispatch: packed rows for every other node g' at xsend_row[g'];
//                combine: the partial sums coming back from node g', same place
// Region sizes are maxima over the EP group, so every rank computes every peer's offsets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "comm/alltoall.h"
#include "comm/exchange_detail.h"
#include "comm/shm_window.h"
#include "comm/ucx.h"

namespace sy::comm::detail {

struct HierState final : HandleState {
  const ExchangeBase* owner = nullptr;  // the exchange that made the layout
  // Source side. send_token[S]: tokens grouped by destination node g' ascending, token ascending.
  std::vector<int64_t> send_token;        // [S]
  std::vector<int64_t> node_begin;        // [G+1] prefix of send_token by destination node
  std::vector<int64_t> xsend_row;         // [G] first row of g''s section in xsend (own node: -1)
  std::vector<int64_t> dispatch_put_row;  // [G] row of peer g''s xrecv where my section lands
  // Forwarder side (this rank's local index on every node).
  std::vector<int64_t> peer_rows;        // [G*G] rows node h's forwarder-peer sends to node g'
  std::vector<int64_t> xrecv_begin;      // [G+1] prefix of the rows from each source node
  std::vector<int64_t> combine_put_row;  // [G] row of peer h's xsend where my reduced rows land
  std::vector<int64_t> fwd_begin;        // [X+1] CSR over xrecv rows
  std::vector<int32_t> fwd_rank;         // [F] local rank that received the row (ascending)
  std::vector<int64_t> fwd_row;          // [F] its row in that rank's recv
  // Receiver side.
  std::vector<int32_t> gather_rank;  // [Mr] local rank of the forwarder holding the row
  std::vector<int64_t> gather_row;   // [Mr] row in that forwarder's xrecv
  // Maxima over the EP group (identical on every rank): region sizes.
  int64_t max_xrecv_rows = 0, max_recv_rows = 0, max_xsend_rows = 0;
  // Traffic per call, in rows.
  int64_t dispatch_intranode_rows = 0, combine_intranode_rows = 0;
};

class HierExchange final : public ExchangeBase {
 public:
  HierExchange(const ExchangeOptions& opt, Topology topo);

  int num_ranks() const override { return topo_.num_ranks; }
  int num_experts() const override { return num_experts_; }
  std::size_t buffer_bytes() const override;
  std::string describe() const override { return description_; }

  // exchange_hier_layout.cpp
  void layout(std::span<const int32_t> topk_idx, int64_t num_tokens, int top_k,
              ExchangeHandle& h) override;

 protected:
  void do_dispatch(const ExchangeHandle& h, const void* x, void* recv, int64_t width,
                   ElemType type) override;
  void do_combine(const ExchangeHandle& h, const void* y, void* out, int64_t width,
                  ElemType type) override;

 private:
  // Byte offsets of one buffer set inside every rank's segment (identical on every rank).
  struct Regions {
    std::size_t set = 0;    // offset of the set in use
    std::size_t xrecv = 0;  // offsets inside the set
    std::size_t ybuf = 0;
    std::size_t xsend = 0;
    std::size_t row_bytes = 0;
    std::byte* xrecv_of(const SharedWindow& w, int local_rank) const {
      return w.segment(local_rank) + set + xrecv;
    }
  };
  // Grows the window (collectively, the same decision on every rank) and picks the next set.
  Regions prepare(const HierState& s, std::size_t row_bytes);
  // Inter-node stage: dispatch sends xsend sections to xrecv; combine the reverse. start puts
  // (or starts an MPI_Ialltoallv), finish completes it (and, over UCX, waits for the peers).
  void start_transfer(const HierState& s, const Regions& reg, int64_t width, ElemType type,
                      bool dispatch);
  void finish_transfer(bool dispatch);
  // work(o) for every other node o (counting what goes to it), start_transfer, work(own node)
  // while the sections travel, finish_transfer: the shape both phases share.
  template <class Work>
  void overlap_own_node(const HierState& s, const Regions& reg, int64_t width, ElemType type,
                        bool dispatch, Work&& work);
  std::string make_description();
  void sync_barrier(const char* what);  // window_.sync_barrier, timed into stats_.sync_seconds

  MPI_Comm ep_comm_;
  Topology topo_;
  int num_experts_, local_experts_;
  Internode internode_;
  Watchdog* watchdog_;
  Comm node_comm_;            // the ranks of this node, by EP rank
  Comm peers_comm_;           // the ranks with this local index, by node: rank = node index
  NodeBarrier node_barrier_;  // the node barriers of every call (shared-memory flags)
  SharedWindow window_;
  std::unique_ptr<UcxPeers> ucx_;  // null with one node or Internode::kMpi
  int64_t op_count_ = 0;           // dispatch + combine calls: picks the buffer set
  std::vector<int> counts_, displs_, rcounts_, rdispls_;  // [G] MPI fallback, rows
  std::optional<RowType> mpi_row_;                        // MPI fallback: the rows' datatype
  MPI_Request mpi_request_ = MPI_REQUEST_NULL;            // MPI fallback in flight
  std::string description_;
};

}  // namespace sy::comm::detail
