// The hierarchical token exchange: buffers, dispatch and combine (the layout is in
// exchange_hier_layout.cpp). Buffer layout and letters: comm/exchange_hier.h; why the barriers
// sit where they do: comm/README.md "synchronisation".
//
// dispatch (D1..D5)                          combine (C1..C6)
//   D1 pack x rows of the other nodes into     C1 copy y -> my ybuf
//      my xsend sections                       C2 node barrier (ybufs visible)
//   D2 put xsend[g'] -> peer g' xrecv[g];      C3 forwarder: xrecv[j] (=) sum over the node's
//      meanwhile pack the own node's rows         receivers of row j (ascending local rank),
//      into my xrecv[g]                           other nodes' sections first
//   D3 flush + node-peer barrier               C4 put xrecv[h] -> peer h xsend[g]; meanwhile
//   D4 node barrier (every xrecv complete)        reduce the own node's section
//   D5 gather recv rows from the node's        C5 flush + node-peer barrier
//      xrecvs (shared memory loads)            C6 out[n] (=) sum over nodes (ascending) of the
//                                                 partial rows of token n
// With parallel.internode=mpi, D2-D3 and C4-C5 are one MPI_Ialltoallv on the node peers.
#include "comm/exchange_hier.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "comm/watchdog.h"
#include "src/core/error.h"

namespace sy::comm::detail {

namespace {

constexpr std::size_t kInitialSegmentBytes = 64 * 1024;
constexpr std::size_t kSets = 3;  // buffer sets used in turn by successive calls

std::size_t round_up(std::size_t bytes, std::size_t to) {
  return (bytes + to - 1) / to * to;
}

// Bytes of one set's slot in a segment (64-byte aligned).
std::size_t slot_bytes(std::size_t segment_bytes) {
  return segment_bytes / kSets / 64 * 64;
}

}  // namespace

HierExchange::HierExchange(const ExchangeOptions& opt, Topology topo)
    : ep_comm_(opt.ep_comm),
      topo_(std::move(topo)),
      num_experts_(opt.num_experts),
      local_experts_(opt.num_experts / topo_.num_ranks),
      internode_(opt.internode),
      watchdog_(opt.watchdog) {
  const int G = topo_.num_nodes, R = topo_.ranks_per_node;
  node_comm_ = Comm::split(ep_comm_, topo_.node(), topo_.rank);
  peers_comm_ = Comm::split(ep_comm_, topo_.local(), topo_.node());
  SY_CHECK(node_comm_.rank() == topo_.local() && node_comm_.size() == R,
           "node communicator rank " << node_comm_.rank() << " for local index " << topo_.local());
  SY_CHECK(peers_comm_.rank() == topo_.node() && peers_comm_.size() == G,
           "node-peer communicator rank " << peers_comm_.rank() << " for node " << topo_.node());
  MPI_CHECK(MPI_Comm_set_name(node_comm_.get(), "sy.a2a.node"));
  MPI_CHECK(MPI_Comm_set_name(peers_comm_.get(), "sy.a2a.node_peers"));
  node_barrier_ = NodeBarrier(node_comm_.get());
  window_ = SharedWindow(node_comm_.get(), kInitialSegmentBytes);
  if (G > 1 && internode_ == Internode::kUcx) {
    // Error messages name a peer by EP rank, world rank and node.
    std::vector<int> world_of_peer(static_cast<std::size_t>(G));
    const int me = world_rank();
    MPI_CHECK(MPI_Allgather(&me, 1, MPI_INT, world_of_peer.data(), 1, MPI_INT, peers_comm_.get()));
    std::vector<std::string> names;
    for (int h = 0; h < G; ++h) {
      std::ostringstream os;
      os << "EP rank " << topo_.ep_of[static_cast<std::size_t>(h * R + topo_.local())]
         << " (world rank " << world_of_peer[static_cast<std::size_t>(h)] << ", node " << h << ")";
      names.push_back(os.str());
    }
    ucx_ = std::make_unique<UcxPeers>(peers_comm_.get(), std::move(names), watchdog_);
    ucx_->expose(window_.mine(), window_.bytes_per_rank());
  }
  for (auto* v : {&counts_, &displs_, &rcounts_, &rdispls_}) v->resize(static_cast<std::size_t>(G));
  description_ = make_description();
}

std::string HierExchange::make_description() {
  const int G = topo_.num_nodes, R = topo_.ranks_per_node;
  // A node peer on another host means the job spans real nodes (not emulated ones).
  char host[MPI_MAX_PROCESSOR_NAME] = {};
  int host_len = 0;
  MPI_CHECK(MPI_Get_processor_name(host, &host_len));
  std::vector<char> hosts(static_cast<std::size_t>(G) * MPI_MAX_PROCESSOR_NAME);
  MPI_CHECK(MPI_Allgather(host, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, hosts.data(),
                          MPI_MAX_PROCESSOR_NAME, MPI_CHAR, peers_comm_.get()));
  int flags[2] = {0, 0};  // [spans real nodes, crosses real nodes over TCP], max over the group
  for (int h = 0; h < G; ++h) {
    if (std::strncmp(host, &hosts[static_cast<std::size_t>(h) * MPI_MAX_PROCESSOR_NAME],
                     MPI_MAX_PROCESSOR_NAME) != 0) {
      flags[0] = 1;
    }
  }
  flags[1] = flags[0] && ucx_ && ucx_->uses_tcp();
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, flags, 2, MPI_INT, MPI_MAX, ep_comm_));

  std::ostringstream os;
  os << "token exchange: hierarchical (network first, once per destination node), " << G << " node"
     << (G > 1 ? "s" : "") << " x " << R << " EP ranks"
     << (flags[0] || G == 1 ? "" : " (all on one host: emulated nodes)")
     << "; intra-node: MPI shared-memory window (row copies)"
     << "; inter-node: ";
  if (G == 1) {
    os << "none (one node)";
  } else if (ucx_) {
    os << "UCX ucp_put_nbx to the node peers over";
    for (const std::string& t : ucx_->transports()) os << " " << t;
  } else {
    os << "MPI_Ialltoallv on the node peers (parallel.internode=mpi)";
  }
  if (flags[1]) {
    const char* warning =
        "WARNING: the inter-node stage of the token exchange runs over TCP across real nodes; "
        "expect it to be several times slower than RDMA (InfiniBand/RoCE). Check UCX_TLS and "
        "UCX_NET_DEVICES, and that `ucx_info -d` lists the RDMA devices on every node.";
    os << "\n" << warning;
    if (topo_.rank == 0) {
      std::fprintf(stderr, "\n*** %s ***\n\n", warning);
      std::fflush(stderr);
    }
  }
  return os.str();
}

void HierExchange::sync_barrier(const char* what) {
  StatsTimer t(&stats_.sync_seconds);
  window_.sync_barrier(node_barrier_, watchdog_, what);
}

std::size_t HierExchange::buffer_bytes() const {
  return window_.bytes_per_rank();
}

HierExchange::Regions HierExchange::prepare(const HierState& s, std::size_t row_bytes) {
  Regions reg;
  reg.row_bytes = row_bytes;
  const std::size_t rb = row_bytes;
  const std::size_t xrecv_bytes = round_up(static_cast<std::size_t>(s.max_xrecv_rows) * rb, 64);
  const std::size_t ybuf_bytes = round_up(static_cast<std::size_t>(s.max_recv_rows) * rb, 64);
  const std::size_t xsend_bytes = round_up(static_cast<std::size_t>(s.max_xsend_rows) * rb, 64);
  const std::size_t set_bytes = xrecv_bytes + ybuf_bytes + xsend_bytes;
  // Three sets, used by calls in turn, each in its own third of the segment: a call never
  // touches the memory of the two calls before it (README "synchronisation"). Every input of the
  // growth decision is identical on every rank (group maxima, W, the capacity), so all of them
  // grow together and the collectives below match.
  if (set_bytes > slot_bytes(window_.bytes_per_rank())) {
    const std::size_t old_bytes = window_.bytes_per_rank();
    const std::size_t grown =
        round_up(std::max(kSets * set_bytes + kSets * 64, old_bytes + old_bytes / 4), 4096);
    WatchdogScope scope(watchdog_,
                        "growing the exchange buffers (collective over the node and "
                        "the node peers)");
    if (ucx_) ucx_->unexpose();
    window_ = SharedWindow();  // free first (collective over the node): never hold both
    window_ = SharedWindow(node_comm_.get(), grown);
    if (ucx_) ucx_->expose(window_.mine(), grown);
  }
  reg.set = static_cast<std::size_t>(op_count_++ % kSets) * slot_bytes(window_.bytes_per_rank());
  reg.xrecv = 0;
  reg.ybuf = xrecv_bytes;
  reg.xsend = xrecv_bytes + ybuf_bytes;
  return reg;
}

void HierExchange::start_transfer(const HierState& s, const Regions& reg, int64_t width,
                                  ElemType type, bool dispatch) {
  const int G = topo_.num_nodes, g = topo_.node();
  if (G == 1) return;
  const std::size_t rb = reg.row_bytes;
  std::byte* mine = window_.mine() + reg.set;
  std::byte* xrecv = mine + reg.xrecv;
  std::byte* xsend = mine + reg.xsend;
  auto node_rows = [&](int o) {
    return s.node_begin[static_cast<std::size_t>(o) + 1] -
           s.node_begin[static_cast<std::size_t>(o)];
  };
  auto from_node = [&](int o) { return s.peer_rows[static_cast<std::size_t>(o * G + g)]; };
  if (ucx_) {
    for (int o = 0; o < G; ++o) {
      if (o == g) continue;
      const auto oi = static_cast<std::size_t>(o);
      if (dispatch) {
        ucx_->put(o, xsend + static_cast<std::size_t>(s.xsend_row[oi]) * rb,
                  static_cast<std::size_t>(node_rows(o)) * rb,
                  reg.set + reg.xrecv + static_cast<std::size_t>(s.dispatch_put_row[oi]) * rb);
      } else {
        ucx_->put(o, xrecv + static_cast<std::size_t>(s.xrecv_begin[oi]) * rb,
                  static_cast<std::size_t>(from_node(o)) * rb,
                  reg.set + reg.xsend + static_cast<std::size_t>(s.combine_put_row[oi]) * rb);
      }
    }
    return;
  }
  // MPI fallback: the same sections, moved by one MPI_Ialltoallv on the node peers (counts and
  // displacements in rows of a row datatype; nothing to or from self, whose section never leaves
  // the rank).
  for (int o = 0; o < G; ++o) {
    const auto oi = static_cast<std::size_t>(o);
    const bool self = o == g;
    const int64_t xsend_rows = self ? 0 : node_rows(o);
    const int64_t xrecv_rows = self ? 0 : from_node(o);
    const int64_t xsend_at = self ? 0 : s.xsend_row[oi];
    const int64_t xrecv_at = s.xrecv_begin[oi];
    const int64_t out_rows = dispatch ? xsend_rows : xrecv_rows;
    const int64_t in_rows = dispatch ? xrecv_rows : xsend_rows;
    counts_[oi] = checked_int(out_rows, "count", o);
    displs_[oi] = checked_int(dispatch ? xsend_at : xrecv_at, "displacement", o);
    rcounts_[oi] = checked_int(in_rows, "count", o);
    rdispls_[oi] = checked_int(dispatch ? xrecv_at : xsend_at, "displacement", o);
  }
  mpi_row_.emplace(width, mpi_type(type));
  MPI_CHECK(MPI_Ialltoallv(dispatch ? xsend : xrecv, counts_.data(), displs_.data(),
                           mpi_row_->get(), dispatch ? xrecv : xsend, rcounts_.data(),
                           rdispls_.data(), mpi_row_->get(), peers_comm_.get(), &mpi_request_));
}

void HierExchange::finish_transfer(bool dispatch) {
  if (topo_.num_nodes == 1) return;
  if (ucx_) {
    ucx_->complete_puts(dispatch ? "dispatch: inter-node UCX puts to the node peers"
                                 : "combine: inter-node UCX puts to the node peers");
    return;
  }
  WatchdogScope scope(watchdog_, dispatch ? "dispatch: inter-node MPI_Ialltoallv on the node peers"
                                          : "combine: inter-node MPI_Ialltoallv on the node peers");
  MPI_CHECK(MPI_Wait(&mpi_request_, MPI_STATUS_IGNORE));
}

template <class Work>
void HierExchange::overlap_own_node(const HierState& s, const Regions& reg, int64_t width,
                                    ElemType type, bool dispatch, Work&& work) {
  const int G = topo_.num_nodes, g = topo_.node();
  for (int o = 0; o < G; ++o) {
    if (o == g) continue;
    work(o);
    // Rows this rank sends to node o: its own tokens' (dispatch) or node o's partial sums back
    // (combine).
    const int64_t rows = dispatch ? s.node_begin[static_cast<std::size_t>(o) + 1] -
                                        s.node_begin[static_cast<std::size_t>(o)]
                                  : s.peer_rows[static_cast<std::size_t>(o * G + g)];
    if (rows > 0) {
      stats_.internode_bytes += rows * static_cast<int64_t>(reg.row_bytes);
      ++stats_.internode_messages;
    }
  }
  {
    StatsTimer t(&stats_.transfer_seconds);
    start_transfer(s, reg, width, type, dispatch);
  }
  work(g);  // the own node's share, while the other nodes' sections travel
  {
    StatsTimer t(&stats_.transfer_seconds);
    finish_transfer(dispatch);
  }
}

void HierExchange::do_dispatch(const ExchangeHandle& h, const void* x, void* recv, int64_t width,
                               ElemType type) {
  StatsTimer timer(&stats_.seconds);
  const HierState& s = state_as<HierState>(h);
  ++stats_.calls;
  const int g = topo_.node();
  const std::size_t rb = static_cast<std::size_t>(width) * elem_bytes(type);
  const Regions reg = prepare(s, rb);
  std::byte* mine = window_.mine() + reg.set;

  // D1: pack; D2: send the other nodes' sections while packing the own node's (which goes
  // straight to where the node reads it); D3: complete.
  const auto* src = static_cast<const std::byte*>(x);
  auto pack = [&](int o) {
    const auto oi = static_cast<std::size_t>(o);
    std::byte* dst = o == g ? mine + reg.xrecv + static_cast<std::size_t>(s.xrecv_begin[oi]) * rb
                            : mine + reg.xsend + static_cast<std::size_t>(s.xsend_row[oi]) * rb;
    for (int64_t k = s.node_begin[oi]; k < s.node_begin[oi + 1]; ++k) {
      std::memcpy(dst + static_cast<std::size_t>(k - s.node_begin[oi]) * rb,
                  src + static_cast<std::size_t>(s.send_token[static_cast<std::size_t>(k)]) * rb,
                  rb);
    }
  };
  overlap_own_node(s, reg, width, type, /*dispatch=*/true, pack);
  // D4: every forwarder's xrecv on this node is complete and visible.
  sync_barrier("dispatch: node barrier after the inter-node stage");
  // D5: gather this rank's rows from the forwarders (shared-memory loads).
  auto* dst = static_cast<std::byte*>(recv);
  for (std::size_t i = 0; i < s.gather_rank.size(); ++i) {
    std::memcpy(
        dst + i * rb,
        reg.xrecv_of(window_, s.gather_rank[i]) + static_cast<std::size_t>(s.gather_row[i]) * rb,
        rb);
  }
  stats_.intranode_bytes += s.dispatch_intranode_rows * static_cast<int64_t>(rb);
}

void HierExchange::do_combine(const ExchangeHandle& h, const void* y, void* out, int64_t width,
                              ElemType type) {
  StatsTimer timer(&stats_.seconds);
  const HierState& s = state_as<HierState>(h);
  ++stats_.calls;
  const int G = topo_.num_nodes, g = topo_.node();
  const std::size_t rb = static_cast<std::size_t>(width) * elem_bytes(type);
  const Regions reg = prepare(s, rb);
  std::byte* mine = window_.mine() + reg.set;

  // C1 + C2: y where the node's forwarders can read it.
  if (h.num_recv > 0) std::memcpy(mine + reg.ybuf, y, static_cast<std::size_t>(h.num_recv) * rb);
  sync_barrier("combine: node barrier before the intra-node reduction");
  // C3: reduce inside the node, in ascending local rank, into xrecv (in place): first the rows
  // that go back to other nodes, which start travelling (C4) while the own node's are reduced.
  std::byte* xrecv = mine + reg.xrecv;
  auto reduce = [&](int source_node) {
    const auto oi = static_cast<std::size_t>(source_node);
    for (int64_t j = s.xrecv_begin[oi]; j < s.xrecv_begin[oi + 1]; ++j) {
      std::byte* acc = xrecv + static_cast<std::size_t>(j) * rb;
      const auto begin = static_cast<std::size_t>(s.fwd_begin[static_cast<std::size_t>(j)]);
      const auto end = static_cast<std::size_t>(s.fwd_begin[static_cast<std::size_t>(j) + 1]);
      for (std::size_t f = begin; f < end; ++f) {
        const std::byte* row = window_.segment(s.fwd_rank[f]) + reg.set + reg.ybuf +
                               static_cast<std::size_t>(s.fwd_row[f]) * rb;
        if (f == begin) {
          std::memcpy(acc, row, rb);
        } else {
          add_row(type, acc, row, width);
        }
      }
    }
  };
  // C4 + C5: the node's partial sums back across the network, once per source node.
  overlap_own_node(s, reg, width, type, /*dispatch=*/false, reduce);
  // C6: at the source, sum over destination nodes in ascending order.
  auto* dst = static_cast<std::byte*>(out);
  if (h.num_tokens > 0) std::memset(dst, 0, static_cast<std::size_t>(h.num_tokens) * rb);
  for (int o = 0; o < G; ++o) {
    const auto oi = static_cast<std::size_t>(o);
    const std::byte* part = o == g
                                ? xrecv + static_cast<std::size_t>(s.xrecv_begin[oi]) * rb
                                : mine + reg.xsend + static_cast<std::size_t>(s.xsend_row[oi]) * rb;
    for (int64_t k = s.node_begin[oi]; k < s.node_begin[oi + 1]; ++k) {
      add_row(type, dst + static_cast<std::size_t>(s.send_token[static_cast<std::size_t>(k)]) * rb,
              part + static_cast<std::size_t>(k - s.node_begin[oi]) * rb, width);
    }
  }
  stats_.intranode_bytes += s.combine_intranode_rows * static_cast<int64_t>(rb);
}

std::unique_ptr<TokenExchange> make_hier_exchange(const ExchangeOptions& opt, Topology topo) {
  return std::make_unique<HierExchange>(opt, std::move(topo));
}

}  // namespace sy::comm::detail
