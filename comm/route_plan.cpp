// The hierarchical route as index lists (see route_plan.h).
#include "comm/route_plan.h"

#include <numeric>
#include <sstream>

#include "src/core/error.h"

namespace sy::comm {

namespace {

// CSR of the positions of `owner` grouped by owner value: begin[n+1], pos[i] ascending per owner.
void invert(const std::vector<int64_t>& owner, int64_t n, std::vector<int64_t>& begin,
            std::vector<int64_t>& pos) {
  begin.assign(static_cast<size_t>(n) + 1, 0);
  for (int64_t o : owner) ++begin[static_cast<size_t>(o) + 1];
  std::partial_sum(begin.begin(), begin.end(), begin.begin());
  std::vector<int64_t> next(begin.begin(), begin.end() - 1);
  pos.resize(owner.size());
  for (size_t i = 0; i < owner.size(); ++i)
    pos[static_cast<size_t>(next[static_cast<size_t>(owner[i])]++)] = static_cast<int64_t>(i);
}

}  // namespace

RouteGroups::RouteGroups(MPI_Comm ep_comm, const std::vector<int>& node_of_ep_rank, int experts)
    : topo(detail::make_topology(ep_comm, node_of_ep_rank)), num_experts(experts) {
  if (num_experts < 1 || num_experts % topo.num_ranks != 0) {
    std::ostringstream os;
    os << "moe.num_experts=" << num_experts << " is not divisible by the EP group size "
       << topo.num_ranks;
    throw UsageError(os.str());
  }
  if (!topo.uniform)
    throw UsageError(
        "the hierarchical expert all-to-all needs the same number of EP ranks on every node (set "
        "parallel.ranks_per_node to a divisor of the EP size)");
  node = Comm::split(ep_comm, topo.node(), topo.local());
  peers = Comm::split(ep_comm, topo.local(), topo.node());
  ep = Comm::dup(ep_comm);
}

int64_t RoutePlan::num_recv() const {
  return top_k == 0 ? 0 : static_cast<int64_t>(recv_topk_local.size()) / top_k;
}

RoutePlan make_route_plan(const RouteGroups& groups, std::span<const int32_t> topk_idx,
                          int64_t num_tokens, int top_k, Watchdog* watchdog) {
  const detail::Topology& topo = groups.topo;
  const int G = topo.num_nodes, R = topo.ranks_per_node, K = top_k;
  const int L = groups.num_experts / topo.num_ranks;
  detail::check_topk(topk_idx, num_tokens, K, groups.num_experts);
  detail::check_same_top_k(groups.ep.get(), K, watchdog);
  const auto node_of_expert = [&](int64_t e) { return topo.node_of[static_cast<size_t>(e / L)]; };
  const auto local_of_expert = [&](int64_t e) { return topo.local_of[static_cast<size_t>(e / L)]; };

  RoutePlan p;
  p.num_tokens = num_tokens;
  p.top_k = K;

  // 1. Across the nodes: each token once to every node holding one of its experts, with its K
  // experts as the record (by destination node, then token).
  p.a_send_rows.assign(static_cast<size_t>(G), 0);
  std::vector<int64_t> records;
  for (int g = 0; g < G; ++g) {
    for (int64_t n = 0; n < num_tokens; ++n) {
      const int32_t* e = topk_idx.data() + n * K;
      bool goes = false;
      for (int j = 0; j < K && !goes; ++j) goes = e[j] >= 0 && node_of_expert(e[j]) == g;
      if (!goes) continue;
      p.a_send_token.push_back(n);
      ++p.a_send_rows[static_cast<size_t>(g)];
      records.insert(records.end(), e, e + K);
    }
    if (g != topo.node()) p.internode_rows += p.a_send_rows[static_cast<size_t>(g)];
  }
  invert(p.a_send_token, num_tokens, p.a_token_begin, p.a_token_pos);
  const std::vector<int64_t> fwd =
      detail::alltoallv_records(groups.peers.get(), records, p.a_send_rows, K, p.a_recv_rows,
                                watchdog, "route plan: token records to the node forwarders");

  // 2. Inside the node: each forwarded row once to every local rank holding one of its experts
  // (by receiving rank, then row).
  const int64_t X = static_cast<int64_t>(fwd.size()) / std::max(K, 1);
  p.b_send_rows.assign(static_cast<size_t>(R), 0);
  records.clear();
  for (int q = 0; q < R; ++q) {
    for (int64_t x = 0; x < X; ++x) {
      const int64_t* e = fwd.data() + x * K;
      bool goes = false;
      for (int j = 0; j < K && !goes; ++j)
        goes = e[j] >= 0 && node_of_expert(e[j]) == topo.node() && local_of_expert(e[j]) == q;
      if (!goes) continue;
      p.b_send_row.push_back(x);
      ++p.b_send_rows[static_cast<size_t>(q)];
      records.insert(records.end(), e, e + K);
    }
    if (q != topo.local()) p.intranode_rows += p.b_send_rows[static_cast<size_t>(q)];
  }
  invert(p.b_send_row, X, p.b_row_begin, p.b_row_pos);
  const std::vector<int64_t> got =
      detail::alltoallv_records(groups.node.get(), records, p.b_send_rows, K, p.b_recv_rows,
                                watchdog, "route plan: token records inside the node");

  // 3. What the local experts see.
  p.recv_topk_local.resize(got.size());
  const int64_t first = static_cast<int64_t>(topo.rank) * L;
  for (size_t i = 0; i < got.size(); ++i)
    p.recv_topk_local[i] =
        got[i] >= first && got[i] < first + L ? static_cast<int32_t>(got[i] - first) : -1;
  return p;
}

}  // namespace sy::comm
