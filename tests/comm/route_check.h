// The check of a route-plan executor (comm/route_plan.h) against the naive reference of
// exchange_ref.h, shared by the host executor's test (tests/comm/route_plan_test.cpp) and the GPU
// exchange's (tests/gpu/nccl/test_gpu_exchange.cpp). The EP group is MPI_COMM_WORLD.
//   - every rank receives exactly the (source rank, token) rows the contract says, each once,
//     with the right local experts per slot, and the dispatched values bit for bit;
//   - the combine returns each token the exact sum of its rows' expert outputs (zeros for a
//     token that went nowhere);
//   - a token crosses to another node once per destination node holding one of its experts.
//   - inside the node, a forwarded row goes once to every other local rank holding one of its
//     experts (the plan's intranode_rows).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <initializer_list>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "comm/route_plan.h"
#include "exchange_ref.h"

namespace sy::test {

// How the checked transport runs: layout (collective) returns its plan; dispatch and combine
// take and return host rows of doubles (exact small integers).
struct RouteExec {
  std::function<const sy::comm::RoutePlan&(std::span<const int32_t>, int64_t, int)> layout;
  std::function<std::vector<double>(const std::vector<double>&, int64_t)> dispatch, combine;
};

// Wrong entries of one routing (this rank's count). P EP ranks, this rank me, E experts,
// node_of[P] the node of each EP rank.
inline int64_t check_route(RouteExec& ex, int P, int me, int E, const std::vector<int>& node_of,
                           const Routing& mine, int64_t width, std::string& first) {
  const int K = mine.top_k, L = E / P;
  int64_t wrong = 0;
  auto note = [&](const std::string& what) {
    ++wrong;
    if (first.empty()) first = "rank " + std::to_string(me) + ": " + what;
  };
  const sy::comm::RoutePlan& plan = ex.layout(mine.topk, mine.num_tokens, K);

  // What arrives: (source, token, local experts), compared as sorted lists.
  const GlobalRouting all = allgather_routing(MPI_COMM_WORLD, mine, E);
  std::vector<std::tuple<int, int64_t, std::vector<int32_t>>> want, got;
  for (const auto& r : expected_recv(all, me)) want.emplace_back(r.src, r.token, r.topk_local);
  std::vector<double> x(static_cast<size_t>(mine.num_tokens * width));
  for (int64_t t = 0; t < mine.num_tokens; ++t)
    for (int64_t c = 0; c < width; ++c)
      x[static_cast<size_t>(t * width + c)] = encode<double>(me, t, c);
  const std::vector<double> recv = ex.dispatch(x, width);
  if (static_cast<int64_t>(recv.size()) != plan.num_recv() * width) note("recv size");
  const int64_t Mr = std::min(plan.num_recv(), static_cast<int64_t>(recv.size()) / width);
  for (int64_t i = 0; i < Mr; ++i) {
    const auto code = static_cast<int64_t>(recv[static_cast<size_t>(i * width)]) / 16;
    const int src = static_cast<int>(code / 1024);
    const int64_t token = code % 1024;
    for (int64_t c = 0; c < width; ++c)
      if (recv[static_cast<size_t>(i * width + c)] != encode<double>(src, token, c))
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
  for (size_t i = 0; i < recv.size(); ++i) y[i] = expert_fn(recv[i], me);
  const std::vector<double> out = ex.combine(y, width);
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
      for (int q : ranks) expect += expert_fn(encode<double>(me, t, c), q);
      if (out[static_cast<size_t>(t * width + c)] != expect) note("combined value");
    }
  }
  // Once per destination node, never once per expert or per rank.
  if (plan.internode_rows != internode)
    note("internode rows " + std::to_string(plan.internode_rows) + ", expected " +
         std::to_string(internode));
  // Inside the node: this rank forwards the rows that the ranks of its local index sent to its
  // node, each once to every other rank of the node holding one of the row's experts.
  auto local_of = [&](int p) {
    int l = 0;
    for (int q = 0; q < p; ++q)
      l += node_of[static_cast<size_t>(q)] == node_of[static_cast<size_t>(p)];
    return l;
  };
  int64_t intranode = 0;
  for (int s = 0; s < P; ++s) {
    if (local_of(s) != local_of(me)) continue;
    for (int64_t t = 0; t < all.tokens[static_cast<size_t>(s)]; ++t) {
      std::vector<int> ranks;
      for (int j = 0; j < K; ++j) {
        const int32_t e = all.topk[static_cast<size_t>(s)][static_cast<size_t>(t * K + j)];
        if (e >= 0 && node_of[static_cast<size_t>(e / L)] == node_of[static_cast<size_t>(me)])
          ranks.push_back(e / L);
      }
      std::sort(ranks.begin(), ranks.end());
      ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
      for (int q : ranks) intranode += q != me;
    }
  }
  if (plan.intranode_rows != intranode)
    note("intranode rows " + std::to_string(plan.intranode_rows) + ", expected " +
         std::to_string(intranode));
  return wrong;
}

// Node of each of P EP ranks on G emulated nodes of consecutive ranks.
inline std::vector<int> block_nodes(int P, int G) {
  std::vector<int> node_of(static_cast<size_t>(P));
  for (int p = 0; p < P; ++p) node_of[static_cast<size_t>(p)] = p / (P / G);
  return node_of;
}

// The sweep both executors' tests run: for each k of `ks` one uniform routing, and at k = 2 one
// of every skew (seeds from `seed`, widths 1..max_width), through `ex` over MPI_COMM_WORLD with E
// experts on node_of. Each failing case is reported under `where`; returns this rank's wrong
// entries.
inline int64_t check_routings(RouteExec& ex, int E, const std::vector<int>& node_of,
                              std::initializer_list<int> ks, unsigned& seed, int max_width,
                              const std::string& where) {
  int P = 1, me = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  int64_t wrong = 0;
  for (int k : ks) {
    for (Skew skew : kAllSkews) {
      if (k != 2 && skew != Skew::kUniform) continue;
      const Routing routing = make_routing(seed++, me, P, E, k, skew);
      std::string first;
      const int64_t w = check_route(ex, P, me, E, node_of, routing, 1 + seed % max_width, first);
      if (w)
        ADD_FAILURE() << where << " k=" << k << " skew=" << name(skew) << ": " << w << " wrong; "
                      << first;
      wrong += w;
    }
  }
  return wrong;
}

}  // namespace sy::test
