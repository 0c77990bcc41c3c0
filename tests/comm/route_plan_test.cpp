// The route plan (comm/route_plan.h) run by a plain host executor (std::copy gathers, CSR sums,
// MPI_Alltoallv over the plan's two communicators), on emulated nodes, checked by route_check.h
// against the naive reference (delivery, values, combine sums, once-per-node traffic); bad node
// layouts and expert counts are refused by name.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "comm/route_plan.h"
#include "common/mpi_util.h"
#include "route_check.h"
#include "src/core/error.h"

namespace {

using sy::comm::RouteGroups;
using sy::comm::RoutePlan;

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

// The plan run by the host executor above.
sy::test::RouteExec host_executor(const RouteGroups& g) {
  auto plan = std::make_shared<RoutePlan>();
  sy::test::RouteExec ex;
  ex.layout = [&g, plan](std::span<const int32_t> topk, int64_t n, int k) -> const RoutePlan& {
    *plan = sy::comm::make_route_plan(g, topk, n, k, nullptr);
    return *plan;
  };
  ex.dispatch = [&g, plan](const std::vector<double>& x, int64_t w) {
    return dispatch(g, *plan, x, w);
  };
  ex.combine = [&g, plan](const std::vector<double>& y, int64_t w) {
    return combine(g, *plan, y, w);
  };
  return ex;
}

TEST(RoutePlan, MatchesReferenceOnEmulatedNodes) {
  const int P = sy::test::world_size();
  int64_t wrong = 0;
  unsigned seed = 11;
  for (int G : sy::test::divisors(P)) {
    const std::vector<int> node_of = sy::test::block_nodes(P, G);
    for (int L : {1, 2}) {
      const RouteGroups groups(MPI_COMM_WORLD, node_of, P * L);
      sy::test::RouteExec ex = host_executor(groups);
      wrong += sy::test::check_routings(ex, P * L, node_of, {1, 2, 4}, seed, 5,
                                        std::to_string(G) + " nodes L=" + std::to_string(L));
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
