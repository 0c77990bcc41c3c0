// The route plan (comm/route_plan.h) run by a plain host executor (std::copy gathers, CSR sums,
// MPI_Alltoallv over the plan's two communicators), on emulated nodes, against the naive
// reference of exchange_ref.h:
//   - every rank receives exactly the (source rank, token) rows the contract says, each once,
//     with the right local experts per slot, and the dispatched values bit for bit;
//   - the combine returns each token the exact sum of its rows' expert outputs (zeros for a
//     token that went nowhere);
//   - the hierarchical property: a token crosses to another node once per destination node
//     holding one of its experts, never once per expert or per rank;
//   - bad node layouts and expert counts are refused by name.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include "comm/route_plan.h"
#include "common/mpi_util.h"
#include "exchange_ref.h"
#include "src/core/error.h"

namespace {

using sy::comm::RouteGroups;
using sy::comm::RoutePlan;
using sy::test::Skew;

// One all-to-all of rows of `width` doubles: send[sum(send_rows)] -> recv[sum(recv_rows)].
std::vector<double> alltoallv(MPI_Comm comm, const std::vector<double>& send,
                              const std::vector<int64_t>& send_rows,
                              const std::vector<int64_t>& recv_rows, int64_t width) {
  auto counts = [&](const std::vector<int64_t>& rows, std::vector<int>& c, std::vector<int>& d) {
    c.resize(rows.size());
    d.resize(rows.size());
    int at = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      c[i] = static_cast<int>(rows[i] * width);
      d[i] = at;
      at += c[i];
    }
    return static_cast<size_t>(at);
  };
  std::vector<int> sc, sd, rc, rd;
  counts(send_rows, sc, sd);
  std::vector<double> recv(counts(recv_rows, rc, rd));
  MPI_Alltoallv(send.data(), sc.data(), sd.data(), MPI_DOUBLE, recv.data(), rc.data(), rd.data(),
                MPI_DOUBLE, comm);
  return recv;
}

std::vector<double> gather(const std::vector<double>& src, const std::vector<int64_t>& idx,
                           int64_t width) {
  std::vector<double> out(idx.size() * static_cast<size_t>(width));
  for (size_t i = 0; i < idx.size(); ++i)
    std::copy_n(src.begin() + idx[i] * width, width, out.begin() + static_cast<int64_t>(i) * width);
  return out;
}

std::vector<double> segment_sum(const std::vector<double>& src, const std::vector<int64_t>& begin,
                                const std::vector<int64_t>& pos, int64_t width) {
  const size_t n = begin.size() - 1;
  std::vector<double> out(n * static_cast<size_t>(width), 0.0);
  for (size_t j = 0; j < n; ++j)
    for (int64_t p = begin[j]; p < begin[j + 1]; ++p)
      for (int64_t c = 0; c < width; ++c)
        out[j * static_cast<size_t>(width) + c] += src[static_cast<size_t>(pos[p] * width + c)];
  return out;
}

std::vector<double> dispatch(const RouteGroups& g, const RoutePlan& p, const std::vector<double>& x,
                             int64_t w) {
  const auto xr =
      alltoallv(g.peers.get(), gather(x, p.a_send_token, w), p.a_send_rows, p.a_recv_rows, w);
  return alltoallv(g.node.get(), gather(xr, p.b_send_row, w), p.b_send_rows, p.b_recv_rows, w);
}

std::vector<double> combine(const RouteGroups& g, const RoutePlan& p, const std::vector<double>& y,
                            int64_t w) {
  const auto b = alltoallv(g.node.get(), y, p.b_recv_rows, p.b_send_rows, w);
  const auto a = alltoallv(g.peers.get(), segment_sum(b, p.b_row_begin, p.b_row_pos, w),
                           p.a_recv_rows, p.a_send_rows, w);
  return segment_sum(a, p.a_token_begin, p.a_token_pos, w);
}

// Wrong entries of one plan against the reference (this rank's count).
int64_t check_plan(const RouteGroups& g, const std::vector<int>& node_of,
                   const sy::test::Routing& mine, int64_t width, std::string& first) {
  const int P = g.topo.num_ranks, me = g.topo.rank, K = mine.top_k;
  const int L = g.num_experts / P;
  int64_t wrong = 0;
  auto note = [&](const std::string& what) {
    ++wrong;
    if (first.empty()) first = "rank " + std::to_string(me) + ": " + what;
  };
  const RoutePlan plan = sy::comm::make_route_plan(g, mine.topk, mine.num_tokens, K, nullptr);

  // What arrives: (source, token, local experts), compared as sorted lists.
  const sy::test::GlobalRouting all =
      sy::test::allgather_routing(MPI_COMM_WORLD, mine, g.num_experts);
  std::vector<std::tuple<int, int64_t, std::vector<int32_t>>> want, got;
  for (const auto& r : sy::test::expected_recv(all, me))
    want.emplace_back(r.src, r.token, r.topk_local);
  std::vector<double> x(static_cast<size_t>(mine.num_tokens * width));
  for (int64_t t = 0; t < mine.num_tokens; ++t)
    for (int64_t c = 0; c < width; ++c)
      x[static_cast<size_t>(t * width + c)] = sy::test::encode<double>(me, t, c);
  const std::vector<double> recv = dispatch(g, plan, x, width);
  if (static_cast<int64_t>(recv.size()) != plan.num_recv() * width) note("recv size");
  const int64_t Mr = std::min(plan.num_recv(), static_cast<int64_t>(recv.size()) / width);
  for (int64_t i = 0; i < Mr; ++i) {
    const auto code = static_cast<int64_t>(recv[static_cast<size_t>(i * width)]) / 16;
    const int src = static_cast<int>(code / 1024);
    const int64_t token = code % 1024;
    for (int64_t c = 0; c < width; ++c)
      if (recv[static_cast<size_t>(i * width + c)] != sy::test::encode<double>(src, token, c))
        note("dispatched value");
    const auto* loc = plan.recv_topk_local.data() + i * K;
    got.emplace_back(src, token, std::vector<int32_t>(loc, loc + K));
  }
  std::sort(want.begin(), want.end());
  std::sort(got.begin(), got.end());
  if (got != want)
    note("received " + std::to_string(got.size()) + " rows, expected " +
         std::to_string(want.size()) + " (or other ones)");

  // The combine: each token the sum of its rows' expert outputs, exactly.
  std::vector<double> y(recv.size());
  for (size_t i = 0; i < recv.size(); ++i) y[i] = sy::test::expert_fn(recv[i], me);
  const std::vector<double> out = combine(g, plan, y, width);
  if (out.size() != x.size()) note("combine size");
  int64_t internode = 0;
  for (int64_t t = 0; t < mine.num_tokens && out.size() == x.size(); ++t) {
    std::vector<int> ranks, nodes;
    for (int j = 0; j < K; ++j) {
      const int32_t e = mine.topk[static_cast<size_t>(t * K + j)];
      if (e < 0) continue;
      ranks.push_back(e / L);
      nodes.push_back(node_of[static_cast<size_t>(e / L)]);
    }
    for (auto* v : {&ranks, &nodes}) {
      std::sort(v->begin(), v->end());
      v->erase(std::unique(v->begin(), v->end()), v->end());
    }
    for (int n : nodes) internode += n != node_of[static_cast<size_t>(me)];
    for (int64_t c = 0; c < width; ++c) {
      double expect = 0;
      for (int q : ranks) expect += sy::test::expert_fn(sy::test::encode<double>(me, t, c), q);
      if (out[static_cast<size_t>(t * width + c)] != expect) note("combined value");
    }
  }
  // Once per destination node, never once per expert or per rank.
  if (plan.internode_rows != internode)
    note("internode rows " + std::to_string(plan.internode_rows) + ", expected " +
         std::to_string(internode));
  return wrong;
}

TEST(RoutePlan, MatchesReferenceOnEmulatedNodes) {
  const int P = sy::test::world_size();
  int64_t wrong = 0;
  unsigned seed = 11;
  for (int G : sy::test::divisors(P)) {
    std::vector<int> node_of(static_cast<size_t>(P));
    for (int p = 0; p < P; ++p) node_of[static_cast<size_t>(p)] = p / (P / G);
    for (int L : {1, 2}) {
      const RouteGroups groups(MPI_COMM_WORLD, node_of, P * L);
      for (int k : {1, 2, 4}) {
        for (Skew skew : sy::test::kAllSkews) {
          if (k != 2 && skew != Skew::kUniform) continue;
          const auto routing =
              sy::test::make_routing(seed++, sy::test::world_rank(), P, P * L, k, skew);
          std::string first;
          const int64_t w = check_plan(groups, node_of, routing, 1 + seed % 5, first);
          if (w)
            ADD_FAILURE() << G << " nodes L=" << L << " k=" << k << " skew=" << name(skew) << ": "
                          << w << " wrong; " << first;
          wrong += w;
        }
      }
    }
  }
  EXPECT_EQ(sy::test::sum_over_world(wrong), 0);
}

TEST(RoutePlan, RefusesUnequalNodesAndIndivisibleExperts) {
  const int P = sy::test::world_size();
  if (P < 3) GTEST_SKIP() << "needs 3+ ranks for unequal nodes (have " << P << ")";
  std::vector<int> uneven(static_cast<size_t>(P), 1);
  uneven[0] = 0;  // node 0 holds one rank, node 1 the rest
  try {
    const RouteGroups g(MPI_COMM_WORLD, uneven, P);
    ADD_FAILURE() << "unequal nodes accepted";
  } catch (const sy::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("ranks_per_node"), std::string::npos) << e.what();
  }
  try {
    const RouteGroups g(MPI_COMM_WORLD, std::vector<int>(static_cast<size_t>(P), 0), P + 1);
    ADD_FAILURE() << "E not divisible by P accepted";
  } catch (const sy::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("moe.num_experts"), std::string::npos) << e.what();
  }
}

}  // namespace
