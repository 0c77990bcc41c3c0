// `moe.route_groups: nodes` resolved for a layout (src/train/loop_common.h): R = the nodes an
// expert-parallel group spans, refused (exit 2) where the groups cannot coincide with the
// experts each node holds. Pure arithmetic on hand-made layouts.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "comm/groups.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/train/loop_common.h"

namespace sy {
namespace {

// world = edp * ep * etp ranks (etp fastest), node_of_rank as given.
comm::Layout layout(int ep, int etp, std::vector<int> node_of_rank) {
  comm::Layout l;
  l.world_size = static_cast<int>(node_of_rank.size());
  l.ep = ep;
  l.etp = etp;
  l.edp = l.world_size / (ep * etp);
  l.node_of_rank = std::move(node_of_rank);
  return l;
}

Config nodes_config(int experts, int top_k, int groups_topk) {
  return parse_config(
      "data:\n  path: x.h5\n",
      {"moe.num_experts=" + std::to_string(experts), "moe.top_k=" + std::to_string(top_k),
       "moe.route_groups=nodes", "moe.route_groups_topk=" + std::to_string(groups_topk)});
}

int resolved(const Config& cfg, const comm::Layout& l) {
  const Config r = resolve_route_groups(cfg, l);
  EXPECT_FALSE(r.moe.route_groups.nodes);
  return static_cast<int>(r.moe.route_groups.count);
}

void expect_refused(const std::function<void()>& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no UsageError";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(RouteGroupsNodes, CountsTheNodesOfTheExpertGroup) {
  const Config cfg = nodes_config(16, 4, 2);
  // ep 8 over 4 nodes of 2 ranks: 4 groups of 4 experts.
  EXPECT_EQ(resolved(cfg, layout(8, 1, {0, 0, 1, 1, 2, 2, 3, 3})), 4);
  // Two EP groups of 4 (edp 2), each over 2 nodes.
  EXPECT_EQ(resolved(cfg, layout(4, 1, {0, 0, 1, 1, 2, 2, 3, 3})), 2);
  // One node: R = 1 (M is not used).
  EXPECT_EQ(resolved(cfg, layout(8, 1, {0, 0, 0, 0, 0, 0, 0, 0})), 1);
  // etp 2: the EP group of each etp rank (ranks 0,2,4,6 and 1,3,5,7) spans 2 nodes.
  EXPECT_EQ(resolved(cfg, layout(4, 2, {0, 0, 0, 0, 1, 1, 1, 1})), 2);
  // A numeric count is not touched.
  const Config numeric =
      parse_config("data:\n  path: x.h5\n", {"moe.num_experts=16", "moe.route_groups=8"});
  EXPECT_EQ(resolved(numeric, layout(8, 1, {0, 0, 1, 1, 2, 2, 3, 3})), 8);
}

TEST(RouteGroupsNodes, RefusesGroupsThatAreNotANodesExperts) {
  const Config cfg = nodes_config(16, 2, 1);
  // Unequal nodes (3 + 5 EP ranks): E/R experts per group cannot be one node's.
  expect_refused(
      [&] {
        resolved(cfg, layout(8, 1, {0, 0, 0, 1, 1, 1, 1, 1}));
      },
      "moe.route_groups: nodes");
  // Node 0 holds EP ranks 0, 1 and 4, 5: not contiguous.
  expect_refused([&] { resolved(cfg, layout(8, 1, {0, 0, 1, 1, 0, 0, 1, 1})); }, "nodes 0 0 1 1");
  // Two EP groups spanning 2 and 1 nodes.
  expect_refused(
      [&] {
        resolved(cfg, layout(4, 1, {0, 0, 1, 1, 2, 2, 2, 2}));
      },
      "another group spans 2 nodes");
  // An expert split over etp ranks on two nodes: a token routed to it reaches both, so no R keeps
  // it on route_groups_topk nodes (ep 2 x etp 2 on nodes of one rank was R = 2 with M = 1, and
  // ep 1 x etp 2 over 2 nodes silently plain top-k).
  expect_refused(
      [&] {
        resolved(cfg, layout(2, 2, {0, 1, 2, 3}));
      },
      "splits the experts of EP rank 0 (edp rank 0) over nodes 0 and 1");
  expect_refused([&] { resolved(cfg, layout(1, 2, {0, 1})); }, "parallel.etp=2");
  // The arithmetic of a numeric R: 4 nodes of one expert each cannot hold a top-2.
  expect_refused(
      [&] {
        resolved(nodes_config(4, 2, 1), layout(4, 1, {0, 1, 2, 3}));
      },
      "moe.route_groups_topk");
}

// The hierarchical exchange needs equal EP ranks per node in each expert-parallel group. On the
// CPU only where parallel.a2a resolves to hierarchical (flat is the way out); device: cuda always
// exchanges hierarchically, so it is refused there whatever parallel.a2a says, without the flat
// advice (the GPU exchange refused it itself, on the uneven groups' ranks only, after start-up).
TEST(HierarchicalGroups, UnevenGroupsAreRefusedWhereTheExchangeIsHierarchical) {
  // ep 3 with edp 2 over nodes of 2 ranks: the first group's ranks 0, 1, 2 sit on nodes 0, 0, 1.
  const comm::Layout uneven = layout(3, 1, {0, 0, 1, 1, 2, 2});
  const auto config = [](const std::string& device, const std::string& a2a) {
    return parse_config("data:\n  path: x.h5\n",
                        {"moe.num_experts=6", "device=" + device, "parallel.a2a=" + a2a});
  };
  expect_refused([&] { check_hierarchical_groups(config("cpu", "hierarchical"), uneven); },
                 "Set parallel.a2a=flat, or parallel.ep");
  EXPECT_NO_THROW(check_hierarchical_groups(config("cpu", "flat"), uneven));
  for (const std::string a2a : {"flat", "hierarchical"}) {
    SCOPED_TRACE(a2a);
    expect_refused([&] { check_hierarchical_groups(config("cuda", a2a), uneven); },
                   "device: cuda: the GPU expert all-to-all");
    try {
      check_hierarchical_groups(config("cuda", a2a), uneven);
    } catch (const UsageError& e) {
      EXPECT_EQ(std::string(e.what()).find("parallel.a2a=flat"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("on nodes 0 0 1"), std::string::npos) << e.what();
    }
  }
  EXPECT_NO_THROW(
      check_hierarchical_groups(config("cuda", "flat"), layout(3, 1, {0, 0, 0, 1, 1, 1})));
}

}  // namespace
}  // namespace sy
