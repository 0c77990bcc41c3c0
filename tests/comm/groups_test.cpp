// Process groups: coordinates and communicator membership for every layout that fits the running
// world size, node emulation, and the layout validation messages.
#include "comm/groups.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "common/mpi_util.h"
#include "src/core/error.h"

namespace {

using sy::comm::Layout;
using sy::comm::ProcessGroups;
using sy::test::allgather;
using sy::test::divisors;
using sy::test::sum_over_world;

struct Expected {
  int dp = 0, tp = 0, edp = 0, ep = 0, etp = 0;
};

// Coordinates by enumeration in the documented nesting order (slowest first), not by div/mod.
std::vector<Expected> enumerate_coords(int world, int tp, int ep, int etp) {
  std::vector<Expected> c(static_cast<size_t>(world));
  int g = 0;
  for (int d = 0; d < world / tp; ++d) {
    for (int t = 0; t < tp; ++t, ++g) {
      c[static_cast<size_t>(g)].dp = d;
      c[static_cast<size_t>(g)].tp = t;
    }
  }
  g = 0;
  for (int ed = 0; ed < world / (ep * etp); ++ed) {
    for (int e = 0; e < ep; ++e) {
      for (int et = 0; et < etp; ++et, ++g) {
        c[static_cast<size_t>(g)].edp = ed;
        c[static_cast<size_t>(g)].ep = e;
        c[static_cast<size_t>(g)].etp = et;
      }
    }
  }
  return c;
}

// The global ranks r with same(r) true, ordered by order(r): the expected members of a group.
template <class Same, class Order>
std::vector<int> members(int world, Same same, Order order) {
  std::map<int, int> by_order;
  for (int r = 0; r < world; ++r) {
    if (same(r)) by_order[order(r)] = r;
  }
  std::vector<int> out;
  for (const auto& [key, r] : by_order) out.push_back(r);
  return out;
}

// Mismatches between one communicator's actual members and the expected ones (reported locally).
int64_t check_members(const sy::comm::Comm& comm, int my_rank, int expected_comm_rank,
                      const std::vector<int>& expected, const std::string& what) {
  int64_t wrong = 0;
  if (comm.rank() != expected_comm_rank) {
    ADD_FAILURE() << what << ": comm rank " << comm.rank() << ", expected " << expected_comm_rank;
    ++wrong;
  }
  const std::vector<int> actual = allgather(comm.get(), my_rank);
  if (actual != expected) {
    std::string a, e;
    for (int r : actual) a += std::to_string(r) + " ";
    for (int r : expected) e += std::to_string(r) + " ";
    ADD_FAILURE() << what << ": members [" << a << "], expected [" << e << "]";
    ++wrong;
  }
  return wrong;
}

TEST(Groups, CoordinatesAndMembersForEveryLayout) {
  const int W = sy::test::world_size(), me = sy::test::world_rank();
  int layouts = 0;
  for (int tp : divisors(W)) {
    for (int ep : divisors(W)) {
      for (int etp : divisors(W / ep)) {
        ProcessGroups g(MPI_COMM_WORLD, {tp, ep, etp, 0});
        const Layout& L = g.layout();
        const std::vector<Expected> c = enumerate_coords(W, tp, ep, etp);
        const Expected& m = c[static_cast<size_t>(me)];
        const std::string tag = "tp=" + std::to_string(tp) + " ep=" + std::to_string(ep) +
                                " etp=" + std::to_string(etp);
        int64_t wrong = 0;
        wrong += L.world_size != W || L.world_rank != me;
        wrong +=
            L.tp != tp || L.dp != W / tp || L.ep != ep || L.etp != etp || L.edp != W / (ep * etp);
        wrong += L.coords.dp_rank != m.dp || L.coords.tp_rank != m.tp ||
                 L.coords.edp_rank != m.edp || L.coords.ep_rank != m.ep ||
                 L.coords.etp_rank != m.etp;
        EXPECT_EQ(wrong, 0) << tag << ": layout sizes or coordinates";

        auto at = [&](int r) -> const Expected& { return c[static_cast<size_t>(r)]; };
        wrong += check_members(g.world(), me, me,
                               members(
                                   W, [](int) { return true; }, [](int r) { return r; }),
                               tag + " world");
        wrong += check_members(
            g.tp(), me, m.tp,
            members(
                W, [&](int r) { return at(r).dp == m.dp; }, [&](int r) { return at(r).tp; }),
            tag + " tp");
        wrong += check_members(
            g.dp(), me, m.dp,
            members(
                W, [&](int r) { return at(r).tp == m.tp; }, [&](int r) { return at(r).dp; }),
            tag + " dp");
        wrong +=
            check_members(g.ep(), me, m.ep,
                          members(
                              W, [&](int r) { return at(r).edp == m.edp && at(r).etp == m.etp; },
                              [&](int r) { return at(r).ep; }),
                          tag + " ep");
        wrong += check_members(g.etp(), me, m.etp,
                               members(
                                   W, [&](int r) { return at(r).edp == m.edp && at(r).ep == m.ep; },
                                   [&](int r) { return at(r).etp; }),
                               tag + " etp");
        wrong += check_members(g.edp(), me, m.edp,
                               members(
                                   W, [&](int r) { return at(r).ep == m.ep && at(r).etp == m.etp; },
                                   [&](int r) { return at(r).edp; }),
                               tag + " edp");
        EXPECT_EQ(sum_over_world(wrong), 0) << tag << " (summed over ranks)";
        ++layouts;
      }
    }
  }
  EXPECT_GE(layouts, 1);
}

TEST(Groups, EmulatedNodesAreBlocksOfConsecutiveRanks) {
  const int W = sy::test::world_size(), me = sy::test::world_rank();
  for (int rpn : divisors(W)) {
    ProcessGroups g(MPI_COMM_WORLD, {1, 1, 1, rpn});
    const Layout& L = g.layout();
    const std::string tag = "ranks_per_node=" + std::to_string(rpn);
    int64_t wrong = 0;
    wrong += !L.emulated_nodes;
    wrong += L.num_nodes != W / rpn || L.node_idx != me / rpn || L.local_rank != me % rpn ||
             L.node_size != rpn;
    for (int r = 0; r < W; ++r) wrong += L.node_of_rank.at(static_cast<size_t>(r)) != r / rpn;
    EXPECT_EQ(wrong, 0) << tag << ": node coordinates";
    std::vector<int> node_members, peers;
    for (int i = 0; i < rpn; ++i) node_members.push_back((me / rpn) * rpn + i);
    for (int n = 0; n < W / rpn; ++n) peers.push_back(n * rpn + me % rpn);
    wrong += check_members(g.node(), me, me % rpn, node_members, tag + " node");
    wrong += check_members(g.node_peers(), me, me / rpn, peers, tag + " node_peers");
    EXPECT_EQ(sum_over_world(wrong), 0) << tag << " (summed over ranks)";
  }
}

TEST(Groups, SharedMemoryNodesFollowTheHostName) {
  const int W = sy::test::world_size(), me = sy::test::world_rank();
  ProcessGroups g(MPI_COMM_WORLD, {1, 1, 1, 0});
  const Layout& L = g.layout();
  EXPECT_FALSE(L.emulated_nodes);

  // Ranks share a node exactly when they run on the same host.
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int len = 0;
  MPI_Get_processor_name(name, &len);
  std::vector<char> names(static_cast<size_t>(W) * MPI_MAX_PROCESSOR_NAME);
  MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, names.data(), MPI_MAX_PROCESSOR_NAME,
                MPI_CHAR, MPI_COMM_WORLD);
  auto host = [&](int r) {
    return std::string(&names[static_cast<size_t>(r) * MPI_MAX_PROCESSOR_NAME]);
  };
  int64_t wrong = 0;
  for (int r = 0; r < W; ++r) {
    const bool same_host = host(r) == host(me);
    const bool same_node = L.node_of_rank.at(static_cast<size_t>(r)) == L.node_idx;
    wrong += same_host != same_node;
  }
  // Every rank's own view of its node index agrees with everyone's node_of_rank table.
  const std::vector<int> node_idx = allgather(MPI_COMM_WORLD, L.node_idx);
  for (int r = 0; r < W; ++r)
    wrong += node_idx[static_cast<size_t>(r)] != L.node_of_rank[static_cast<size_t>(r)];
  std::vector<int> node_members;
  for (int r = 0; r < W; ++r) {
    if (L.node_of_rank[static_cast<size_t>(r)] == L.node_idx) node_members.push_back(r);
  }
  wrong += L.node_size != static_cast<int>(node_members.size());
  wrong += check_members(g.node(), me, L.local_rank, node_members, "shared-memory node");
  // Every node the same size (counted here from node_of_rank): one peer per node.
  bool uniform = true;
  for (int n = 0; n < L.num_nodes; ++n)
    uniform &= std::count(L.node_of_rank.begin(), L.node_of_rank.end(), n) == L.node_size;
  wrong += g.node_peers().size() != L.num_nodes && uniform;
  EXPECT_EQ(sum_over_world(wrong), 0);
}

// The message of the sy::UsageError thrown by validate_layout, or "" when none was thrown.
std::string validation_message(int world, int tp, int ep, int etp, int experts, int heads, int ffn,
                               int rpn) {
  try {
    sy::comm::validate_layout(world, tp, ep, etp, experts, heads, ffn, rpn);
  } catch (const sy::UsageError& e) {
    return e.what();
  }
  return "";
}

TEST(Groups, ValidateLayoutNamesTheKey) {
  EXPECT_EQ(validation_message(4, 1, 1, 1, 8, 4, 16, 0), "");
  EXPECT_EQ(validation_message(8, 2, 4, 2, 8, 4, 16, 4), "");
  EXPECT_EQ(validation_message(4, 3, 1, 1, 8, 3, 16, 0),
            "parallel.tp=3 does not divide the world size 4");
  EXPECT_EQ(validation_message(4, 1, 3, 1, 6, 4, 16, 0),
            "parallel.ep=3 does not divide the world size 4");
  const std::string ep_etp = validation_message(4, 1, 2, 4, 8, 4, 16, 0);
  EXPECT_NE(ep_etp.find("parallel.etp"), std::string::npos) << ep_etp;
  EXPECT_NE(ep_etp.find("world size 4"), std::string::npos) << ep_etp;
  EXPECT_EQ(validation_message(4, 1, 4, 1, 6, 4, 16, 0),
            "moe.num_experts=6 is not divisible by parallel.ep=4");
  EXPECT_EQ(validation_message(4, 2, 1, 1, 8, 3, 16, 0),
            "model.n_heads=3 is not divisible by parallel.tp=2");
  EXPECT_EQ(validation_message(4, 1, 1, 2, 8, 4, 15, 0),
            "moe.ffn_hidden=15 is not divisible by parallel.etp=2");
  EXPECT_EQ(validation_message(4, 1, 1, 1, 8, 4, 16, 3),
            "parallel.ranks_per_node=3 does not divide the world size 4");
  EXPECT_NE(validation_message(4, 0, 1, 1, 8, 4, 16, 0).find("parallel.tp=0"), std::string::npos);
  EXPECT_NE(validation_message(4, 1, 1, 1, 8, 4, 16, -1).find("parallel.ranks_per_node=-1"),
            std::string::npos);
}

TEST(Groups, ProcessGroupsRejectsALayoutThatDoesNotFitTheWorld) {
  const int W = sy::test::world_size();
  // Every rank throws before creating a communicator, so nobody is left in a collective.
  EXPECT_THROW(ProcessGroups(MPI_COMM_WORLD, {W + 1, 1, 1, 0}), sy::UsageError);
  EXPECT_THROW(ProcessGroups(MPI_COMM_WORLD, {1, 2 * W, 1, 0}), sy::UsageError);
  EXPECT_THROW(ProcessGroups(MPI_COMM_WORLD, {1, 1, 1, W + 1}), sy::UsageError);
  EXPECT_EQ(MPI_Barrier(MPI_COMM_WORLD), MPI_SUCCESS);
}

TEST(Groups, DescribeListsCoordinatesNodesAndExperts) {
  // A hand-built 8-rank layout; the lines below were worked out by hand from the SPEC formulas.
  Layout L;
  L.world_size = 8;
  L.tp = 2;
  L.dp = 4;
  L.ep = 2;
  L.etp = 2;
  L.edp = 2;
  L.num_nodes = 2;
  L.emulated_nodes = true;
  L.node_of_rank = {0, 0, 0, 0, 1, 1, 1, 1};
  const std::string text = sy::comm::describe(L, 4);
  EXPECT_NE(
      text.find("  rank 0: dp=0 tp=0 | edp=0 ep=0 etp=0 | node 0 | experts 0-1 (shard 0/2)\n"),
      std::string::npos)
      << text;
  EXPECT_NE(
      text.find("  rank 5: dp=2 tp=1 | edp=1 ep=0 etp=1 | node 1 | experts 0-1 (shard 1/2)\n"),
      std::string::npos)
      << text;
  EXPECT_NE(
      text.find("  rank 6: dp=3 tp=0 | edp=1 ep=1 etp=0 | node 1 | experts 2-3 (shard 0/2)\n"),
      std::string::npos)
      << text;
  size_t lines = 0;
  for (size_t pos = text.find("  rank "); pos != std::string::npos;
       pos = text.find("  rank ", pos + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 8u) << text;

  // One expert per EP rank, no expert tensor parallelism.
  L.tp = 1;
  L.dp = 8;
  L.ep = 8;
  L.etp = 1;
  L.edp = 1;
  const std::string one = sy::comm::describe(L, 8);
  EXPECT_NE(one.find("  rank 3: dp=3 tp=0 | edp=0 ep=3 etp=0 | node 0 | experts 3\n"),
            std::string::npos)
      << one;

  // An expert placement decides the experts per layer: the lines name none, rather than the
  // contiguous blocks the placement replaced.
  const std::string placed = sy::comm::describe(L, 8, /*contiguous_experts=*/false);
  EXPECT_NE(placed.find("experts=8 (1 per EP rank, placed per layer by parallel.expert_placement)"),
            std::string::npos)
      << placed;
  EXPECT_NE(placed.find("  rank 3: dp=3 tp=0 | edp=0 ep=3 etp=0 | node 0\n"), std::string::npos)
      << placed;
  EXPECT_EQ(placed.find("| experts "), std::string::npos) << placed;
}

}  // namespace
