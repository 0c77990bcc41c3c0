// Layout of the hierarchical token exchange: who sends which token to which node, which
// forwarder hands it to which rank of that node, and where every row sits in every buffer
// (letters and buffers: comm/exchange_hier.h). Control traffic only, by blocking MPI: no UCX
// operation is in flight between calls, so the progress rule is kept.
//
//   L1 source   : per token, its destination NODES (deduplicated over the K slots)
//   L2 node peers: records [token, topk_idx[K]] to each node's forwarder (MPI_Alltoallv on the
//                  node peers) and the row counts of the whole node-peer group (MPI_Allgather)
//   L3 forwarder: per received row, the ranks of this node holding one of its experts;
//                 records [xrecv row, source EP rank, token, local topk[K]] to each of them
//                 (MPI_Alltoallv on the node)
//   L4 receiver : sorts its rows by (source EP rank, token) -- the documented order -- and
//                 tells each forwarder where every row it handed out landed (MPI_Alltoallv)
//   L5 forwarder: a CSR over its rows (receivers ascending) for the combine's reduction
//   L6 group    : maxima of the buffer sizes over the EP group (MPI_Allreduce), so every rank
//                 computes identical region offsets and grows its buffers in step
#include <algorithm>
#include <numeric>

#include "comm/exchange_hier.h"
#include "comm/watchdog.h"
#include "src/core/error.h"

namespace sy::comm::detail {

void HierExchange::layout(std::span<const int32_t> topk_idx, int64_t num_tokens, int top_k,
                          ExchangeHandle& h) {
  StatsTimer timer(&stats_.seconds);
  check_topk(topk_idx, num_tokens, top_k, num_experts_);
  check_same_top_k(ep_comm_, top_k, watchdog_);
  const int G = topo_.num_nodes, R = topo_.ranks_per_node, g = topo_.node(), r = topo_.local();
  const int K = top_k, L = local_experts_;
  const auto N = static_cast<std::size_t>(num_tokens);
  const auto Gs = static_cast<std::size_t>(G), Rs = static_cast<std::size_t>(R);
  auto state = std::make_shared<HierState>();
  HierState& s = *state;
  s.owner = this;
  auto topk = [&](std::size_t n, int j) { return topk_idx[n * K + static_cast<std::size_t>(j)]; };
  auto node_of_expert = [&](int32_t e) { return topo_.node_of[static_cast<std::size_t>(e / L)]; };

  // ---- L1: destination nodes per token: count, prefix, fill (token ascending per node) ----
  std::vector<int64_t> node_rows(Gs, 0), marked(std::max(Gs, Rs), -1);
  for (std::size_t n = 0; n < N; ++n) {
    for (int j = 0; j < K; ++j) {
      if (topk(n, j) < 0) continue;
      const auto o = static_cast<std::size_t>(node_of_expert(topk(n, j)));
      if (marked[o] != static_cast<int64_t>(n)) ++node_rows[o];
      marked[o] = static_cast<int64_t>(n);
    }
  }
  s.node_begin.assign(Gs + 1, 0);
  for (std::size_t o = 0; o < Gs; ++o) s.node_begin[o + 1] = s.node_begin[o] + node_rows[o];
  const int64_t S = s.node_begin[Gs];
  s.send_token.resize(static_cast<std::size_t>(S));
  const int fwd_record = 1 + K;  // [token, topk_idx[K]]
  std::vector<int64_t> records(static_cast<std::size_t>(S * fwd_record));
  std::vector<int64_t> cursor(s.node_begin.begin(), s.node_begin.end() - 1);
  std::fill(marked.begin(), marked.end(), -1);
  for (std::size_t n = 0; n < N; ++n) {
    for (int j = 0; j < K; ++j) {
      if (topk(n, j) < 0) continue;
      const auto o = static_cast<std::size_t>(node_of_expert(topk(n, j)));
      if (marked[o] == static_cast<int64_t>(n)) continue;
      marked[o] = static_cast<int64_t>(n);
      const auto row = static_cast<std::size_t>(cursor[o]++);
      s.send_token[row] = static_cast<int64_t>(n);
      int64_t* rec = &records[row * static_cast<std::size_t>(fwd_record)];
      rec[0] = static_cast<int64_t>(n);
      for (int i = 0; i < K; ++i) rec[1 + i] = topk(n, i);
    }
  }
  // xsend holds the sections of the other nodes only.
  s.xsend_row.assign(Gs, -1);
  int64_t xsend_rows = 0;
  for (std::size_t o = 0; o < Gs; ++o) {
    if (static_cast<int>(o) == g) continue;
    s.xsend_row[o] = xsend_rows;
    xsend_rows += node_rows[o];
  }

  // ---- L2: to the forwarders; the node-peer group's row counts ----
  std::vector<int64_t> from_node;  // [G] rows from each source node
  const std::vector<int64_t> xrecords =
      alltoallv_records(peers_comm_.get(), records, node_rows, fwd_record, from_node, watchdog_,
                        "layout: token records to the forwarders on the node peers");
  s.peer_rows.resize(Gs * Gs);
  {
    WatchdogScope scope(watchdog_, "layout: row counts of the node peers");
    MPI_CHECK(MPI_Allgather(node_rows.data(), G, MPI_INT64_T, s.peer_rows.data(), G, MPI_INT64_T,
                            peers_comm_.get()));
  }
  s.xrecv_begin.assign(Gs + 1, 0);
  for (std::size_t o = 0; o < Gs; ++o) s.xrecv_begin[o + 1] = s.xrecv_begin[o] + from_node[o];
  const int64_t X = s.xrecv_begin[Gs];
  // Where my sections land at the peers: node g''s xrecv holds the sources in node order; node
  // h's xsend holds the destinations in node order, its own node left out.
  s.dispatch_put_row.assign(Gs, 0);
  s.combine_put_row.assign(Gs, 0);
  for (int o = 0; o < G; ++o) {
    for (int before = 0; before < g; ++before) {
      s.dispatch_put_row[static_cast<std::size_t>(o)] +=
          s.peer_rows[static_cast<std::size_t>(before * G + o)];
      if (before != o) {
        s.combine_put_row[static_cast<std::size_t>(o)] +=
            s.peer_rows[static_cast<std::size_t>(o * G + before)];
      }
    }
  }

  // ---- L3: forwarder fans its rows out to the ranks of this node holding their experts ----
  const int recv_record = 3 + K;  // [xrecv row, source EP rank, token, local topk[K]]
  std::vector<int64_t> to_rank(Rs, 0);
  auto for_each_receiver = [&](int64_t j, auto&& fn) {
    const int64_t* rec = &xrecords[static_cast<std::size_t>(j * fwd_record)];
    for (int i = 0; i < K; ++i) {
      const int64_t e = rec[1 + i];
      if (e < 0 || node_of_expert(static_cast<int32_t>(e)) != g) continue;
      const auto q = static_cast<std::size_t>(topo_.local_of[static_cast<std::size_t>(e / L)]);
      if (marked[q] == j) continue;
      marked[q] = j;
      fn(q, rec);
    }
  };
  std::fill(marked.begin(), marked.end(), -1);
  for (int64_t j = 0; j < X; ++j)
    for_each_receiver(j, [&](std::size_t q, const int64_t*) { ++to_rank[q]; });
  std::vector<int64_t> rank_begin(Rs + 1, 0);
  for (std::size_t q = 0; q < Rs; ++q) rank_begin[q + 1] = rank_begin[q] + to_rank[q];
  const int64_t F = rank_begin[Rs];
  std::vector<int64_t> fan(static_cast<std::size_t>(F * recv_record));
  std::vector<int64_t> fan_row(static_cast<std::size_t>(F));  // xrecv row of each fan record
  std::vector<int64_t> fill(rank_begin.begin(), rank_begin.end() - 1);
  std::fill(marked.begin(), marked.end(), -1);
  int source_node = 0;
  for (int64_t j = 0; j < X; ++j) {
    while (j >= s.xrecv_begin[static_cast<std::size_t>(source_node) + 1]) ++source_node;
    const int source = topo_.ep_of[static_cast<std::size_t>(source_node * R + r)];
    for_each_receiver(j, [&](std::size_t q, const int64_t* rec) {
      const auto at = static_cast<std::size_t>(fill[q]++);
      fan_row[at] = j;
      int64_t* out = &fan[at * static_cast<std::size_t>(recv_record)];
      out[0] = j;
      out[1] = source;
      out[2] = rec[0];
      const int receiver = topo_.ep_of[static_cast<std::size_t>(g * R) + q];
      for (int i = 0; i < K; ++i) {
        const int64_t e = rec[1 + i];
        out[3 + i] = e >= 0 && e / L == receiver ? e % L : -1;
      }
    });
  }
  std::vector<int64_t> from_forwarder;  // [R]
  const std::vector<int64_t> mine =
      alltoallv_records(node_comm_.get(), fan, to_rank, recv_record, from_forwarder, watchdog_,
                        "layout: row records from the forwarders on the node");

  // ---- L4: this rank's rows in (source EP rank, token) order ----
  const int64_t Mr = static_cast<int64_t>(mine.size()) / recv_record;
  auto rec_of = [&](int64_t k) { return &mine[static_cast<std::size_t>(k * recv_record)]; };
  std::vector<int64_t> order(static_cast<std::size_t>(Mr));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    const int64_t *ra = rec_of(a), *rb = rec_of(b);
    return ra[1] != rb[1] ? ra[1] < rb[1] : ra[2] < rb[2];
  });
  std::vector<int32_t> forwarder_of(static_cast<std::size_t>(Mr));
  for (int f = 0, k = 0; f < R; ++f) {
    for (int64_t c = 0; c < from_forwarder[static_cast<std::size_t>(f)]; ++c) {
      forwarder_of[static_cast<std::size_t>(k++)] = f;
    }
  }
  h.num_tokens = num_tokens;
  h.top_k = K;
  h.num_recv = Mr;
  h.recv_src_rank.resize(static_cast<std::size_t>(Mr));
  h.recv_src_token.resize(static_cast<std::size_t>(Mr));
  h.recv_topk_local.resize(static_cast<std::size_t>(Mr * K));
  s.gather_rank.resize(static_cast<std::size_t>(Mr));
  s.gather_row.resize(static_cast<std::size_t>(Mr));
  std::vector<int64_t> landed(static_cast<std::size_t>(Mr));  // per record (arrival order)
  for (int64_t i = 0; i < Mr; ++i) {
    const int64_t k = order[static_cast<std::size_t>(i)];
    const int64_t* rec = rec_of(k);
    const auto iu = static_cast<std::size_t>(i);
    landed[static_cast<std::size_t>(k)] = i;
    h.recv_src_rank[iu] = static_cast<int32_t>(rec[1]);
    h.recv_src_token[iu] = rec[2];
    for (int j = 0; j < K; ++j) {
      h.recv_topk_local[iu * K + static_cast<std::size_t>(j)] = static_cast<int32_t>(rec[3 + j]);
    }
    s.gather_rank[iu] = forwarder_of[static_cast<std::size_t>(k)];
    s.gather_row[iu] = rec[0];
    if (s.gather_rank[iu] != r) ++s.combine_intranode_rows;
  }
  std::vector<int64_t> back_rows;  // == to_rank
  const std::vector<int64_t> landed_at =
      alltoallv_records(node_comm_.get(), landed, from_forwarder, 1, back_rows, watchdog_,
                        "layout: receive positions back to the forwarders on the node");

  // ---- L5: CSR over xrecv rows, receivers ascending (fan records are grouped by receiver) ----
  s.fwd_begin.assign(static_cast<std::size_t>(X) + 1, 0);
  for (int64_t k = 0; k < F; ++k)
    ++s.fwd_begin[static_cast<std::size_t>(fan_row[static_cast<std::size_t>(k)]) + 1];
  for (int64_t j = 0; j < X; ++j)
    s.fwd_begin[static_cast<std::size_t>(j) + 1] += s.fwd_begin[static_cast<std::size_t>(j)];
  s.fwd_rank.resize(static_cast<std::size_t>(F));
  s.fwd_row.resize(static_cast<std::size_t>(F));
  std::vector<int64_t> next(s.fwd_begin.begin(), s.fwd_begin.end() - 1);
  for (std::size_t q = 0; q < Rs; ++q) {
    for (int64_t k = rank_begin[q]; k < rank_begin[q + 1]; ++k) {
      const auto at = static_cast<std::size_t>(
          next[static_cast<std::size_t>(fan_row[static_cast<std::size_t>(k)])]++);
      s.fwd_rank[at] = static_cast<int32_t>(q);
      s.fwd_row[at] = landed_at[static_cast<std::size_t>(k)];
      if (static_cast<int>(q) != r) ++s.dispatch_intranode_rows;
    }
  }

  // ---- L6: buffer sizes, maxima over the EP group ----
  int64_t sizes[3] = {X, Mr, xsend_rows};
  {
    WatchdogScope scope(watchdog_, "layout: buffer sizes on the EP group");
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, sizes, 3, MPI_INT64_T, MPI_MAX, ep_comm_));
  }
  s.max_xrecv_rows = sizes[0];
  s.max_recv_rows = sizes[1];
  s.max_xsend_rows = sizes[2];
  h.state = std::move(state);
}

}  // namespace sy::comm::detail
