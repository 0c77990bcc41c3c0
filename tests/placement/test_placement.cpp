// Expert placement (issue 17) without training: placement files and their errors, the rule that
// route groups move whole, METIS partitions of hand-made co-activation matrices whose best split
// is known by construction, the traffic estimates against hand-computed values, and the
// co-activation counts and their file.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/file_size_limit.h"
#include "common/temp_dir.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/core/h5.h"
#include "src/placement/coactivation_file.h"
#include "src/placement/partition.h"
#include "src/placement/placement.h"
#include "src/train/coactivation.h"

namespace sy {
namespace {

using Sets = std::set<std::set<int>>;

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// The message of the UsageError `f` throws ("" when it throws none).
template <class F>
std::string usage_error(F&& f) {
  try {
    f();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

// Which experts share a part (node or rank) of `rank_of`, parts of `per_part` ranks.
Sets groups_of(const std::vector<int32_t>& rank_of, int per_part) {
  std::map<int, std::set<int>> by;
  for (size_t e = 0; e < rank_of.size(); ++e) by[rank_of[e] / per_part].insert(static_cast<int>(e));
  Sets out;
  for (auto& [p, s] : by) out.insert(s);
  return out;
}

// ---- placement files ---------------------------------------------------------------------------

TEST(PlacementFile, ReadsBackWhatItWrites) {
  test::TempDir dir;
  ExpertPlacement p = ExpertPlacement::from_ranks({{1, 0, 0, 1}, {0, 1, 1, 0}}, 2, "test");
  p.ranks_per_node = 1;
  EXPECT_EQ(p.experts_on(0, 0), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(p.experts_on(0, 1), (std::vector<int32_t>{0, 3}));
  EXPECT_EQ(p.slots(0), (std::vector<int32_t>{2, 0, 1, 3}));  // rank * L + local index
  EXPECT_FALSE(p.is_contiguous());
  EXPECT_EQ(describe_placement(p, 1), "layer 0: [1 2] | [0 3]; layer 1: [0 3] | [1 2]");
  EXPECT_EQ(describe_placement(p, 0, 1), "layer 0: [1 2] [0 3]; ...");
  EXPECT_TRUE(ExpertPlacement::contiguous(2, 4, 2).is_contiguous());
  const std::string path = dir.file("p.yaml");
  write_placement(path, p, {"a comment"});
  const ExpertPlacement q = read_placement(path);
  EXPECT_EQ(q, p);
  EXPECT_EQ(q.ranks_per_node, 1);
}

TEST(PlacementFile, EveryBadFileIsRefusedNamingTheProblem) {
  test::TempDir dir;
  const std::string head = "format: switchyard-expert-placement\nversion: 1\n";
  const std::string e4 = head + "num_experts: 4\nep: 2\n";
  struct Case {
    std::string label, text, expect;
  };
  const std::vector<Case> cases = {
      {"missing_expert", e4 + "layers:\n  - [[0, 1], [2]]\n", "expert 3 is missing"},
      {"repeated_expert", e4 + "layers:\n  - [[0, 1], [1, 3]]\n", "expert 1 is repeated"},
      {"out_of_range", e4 + "layers:\n  - [[0, 1], [2, 4]]\n", "expert 4 is not in 0..3"},
      {"negative_expert", e4 + "layers:\n  - [[0, -1], [2, 3]]\n", "expert -1 is not in 0..3"},
      {"wrong_rank_count", e4 + "layers:\n  - [[0, 1, 2, 3]]\n", "ep = 2 lists"},
      {"unbalanced_ranks", e4 + "layers:\n  - [[0, 1, 2], [3]]\n", "holds 3 experts"},
      {"second_layer_bad", e4 + "layers:\n  - [[0, 1], [2, 3]]\n  - [[0, 0], [2, 3]]\n",
       "layers[1]: expert 0 is repeated"},
      {"not_an_integer", e4 + "layers:\n  - [[0, x], [2, 3]]\n", "expected an integer"},
      // Integers in decimal, as the config reads them: yaml-cpp took 0x3 as 3 and 010 as 8.
      {"hex", e4 + "layers:\n  - [[0, 1], [2, 0x3]]\n", "expected an integer, got '0x3'"},
      {"leading_zero", e4 + "layers:\n  - [[0, 1], [2, 010]]\n", "expert 10 is not in 0..3"},
      {"quoted", e4 + "layers:\n  - [[0, 1], [2, \"3\"]]\n", "expected an integer, got '3'"},
      {"no_layers", e4, "layers: expected a list"},
      {"ep_not_divisor", head + "num_experts: 4\nep: 3\nlayers:\n  - [[0], [1], [2, 3]]\n",
       "multiple of ep"},
      {"unknown_key", e4 + "layer:\n  - [[0, 1], [2, 3]]\n", "unknown key 'layer'"},
      {"wrong_format", "format: other\nversion: 1\n", "format"},
      {"wrong_version",
       head.substr(0, head.find("version")) +
           "version: 7\nnum_experts: 4\nep: 2\nlayers:\n  - [[0, 1], [2, 3]]\n",
       "version"},
      {"yaml_syntax", e4 + "layers:\n  - [[0, 1], [2, 3]\n", "YAML syntax error at line"},
      // A quote not closed swallowed the rest of the file (the layers) without a syntax error.
      {"open_quote",
       e4.substr(0, e4.find("num_experts")) + "note: \"x\n" + e4.substr(e4.find("num_experts")) +
           "layers:\n  - [[0, 1], [2, 3]]\n",
       "a quote opened and not closed"},
      // yaml-cpp kept the first of a key given twice, and read the first document only.
      {"duplicate_key", e4 + "layers:\n  - [[0, 1], [2, 3]]\nlayers:\n  - [[0, 0], [2, 3]]\n",
       "layers: duplicate key"},
      {"two_documents", e4 + "layers:\n  - [[0, 1], [2, 3]]\n---\nfoo: 1\n", "2 YAML documents"},
      {"bad_ranks_per_node", e4 + "ranks_per_node: -3\nlayers:\n  - [[0, 1], [2, 3]]\n",
       "ranks_per_node: -3 must be at least 1"},
  };
  for (const auto& c : cases) {
    const std::string path = dir.file(c.label + ".yaml");
    write_text(path, c.text);
    const std::string msg = usage_error([&] { read_placement(path); });
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.label << ": '" << msg << "'";
    EXPECT_NE(msg.find(path), std::string::npos) << c.label << " does not name the file: " << msg;
  }
  EXPECT_NE(usage_error([&] {
              read_placement(dir.file("absent.yaml"));
            }).find("expert placement file '" + dir.file("absent.yaml") + "' not found"),
            std::string::npos);
  EXPECT_NE(usage_error([&] {
              read_placement(dir.path().string());
            }).find("is a directory, expected a file written by `switchyard placement`"),
            std::string::npos);
}

TEST(PlacementFile, AMismatchWithTheConfigNamesTheKey) {
  test::TempDir dir;
  const std::string path = dir.file("p.yaml");
  write_placement(path, ExpertPlacement::from_ranks({{1, 0, 0, 1}, {0, 1, 1, 0}}, 2, "test"));
  Config cfg;  // defaults: 2 layers, 4 experts
  cfg.parallel.ep = 2;
  cfg.parallel.expert_placement = path;
  ASSERT_NE(load_expert_placement(cfg), nullptr);
  cfg.parallel.expert_placement = "";
  EXPECT_EQ(load_expert_placement(cfg), nullptr);
  cfg.parallel.expert_placement = path;
  auto expect = [&](Config c, const std::string& what) {
    const std::string msg = usage_error([&] { load_expert_placement(c); });
    EXPECT_NE(msg.find("parallel.expert_placement"), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
  };
  Config c = cfg;
  c.moe.num_experts = 8;
  expect(c, "moe.num_experts = 8");
  c = cfg;
  c.model.n_layers = 3;
  expect(c, "model.n_layers = 3");
  c = cfg;
  c.parallel.ep = 4;
  expect(c, "parallel.ep = 4");
  c = cfg;
  c.device = Device::kCuda;
  expect(c, "device: cuda");
  c = cfg;
  c.parallel.expert_placement = dir.file("absent.yaml");
  expect(c, "absent.yaml");
}

// ---- route groups ------------------------------------------------------------------------------

TEST(PlacementRouteGroups, OnlyWholeGroupsMoveBetweenNodes) {
  const std::vector<int> two_nodes = {0, 0, 1, 1};  // EP ranks 0,1 on node 0, 2,3 on node 1
  const std::string key = "parallel.expert_placement=p.yaml";  // what messages name
  auto place = [](std::vector<int32_t> r) { return ExpertPlacement::from_ranks({r}, 4, "t"); };
  // E = 8, L = 2. Groups of 4 (R = 2) and of 2 (R = 4).
  const ExpertPlacement swapped = place({2, 2, 3, 3, 0, 0, 1, 1});   // the groups change nodes
  const ExpertPlacement inside = place({1, 0, 1, 0, 2, 3, 3, 2});    // moves inside the nodes
  const ExpertPlacement crossing = place({2, 0, 0, 1, 1, 3, 3, 2});  // 0 and 4 change nodes
  for (const RouteGroups g : {RouteGroups{2, false}, RouteGroups{1, true}, RouteGroups{4, false}})
    for (const auto* ok : {&swapped, &inside})
      EXPECT_NO_THROW(check_placement_route_groups(*ok, g, two_nodes, key)) << g.count << g.nodes;
  const std::string msg = usage_error([&] {
    check_placement_route_groups(crossing, RouteGroups{2, false}, two_nodes, key);
  });
  EXPECT_NE(msg.find("routing group 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find(key + ": layer 0"), std::string::npos) << msg;
  EXPECT_NE(usage_error([&] {
              check_placement_route_groups(crossing, RouteGroups{1, true}, two_nodes, key);
            }).find("routing group 0"),
            std::string::npos);
  // R = 4: group {0, 1} on ranks 2 and 0 (nodes 1 and 0) spreads; R = 1 allows anything.
  EXPECT_NE(usage_error([&] {
              check_placement_route_groups(crossing, RouteGroups{4, false}, two_nodes, key);
            }),
            "");
  EXPECT_NO_THROW(check_placement_route_groups(crossing, RouteGroups{1, false}, two_nodes, key));
  // R = 2 over 4 nodes: each group spans 2 nodes, and may be reshuffled inside them.
  const std::vector<int> four_nodes = {0, 1, 2, 3};
  EXPECT_NO_THROW(check_placement_route_groups(inside, RouteGroups{2, false}, four_nodes, key));
  EXPECT_NE(usage_error([&] {
              check_placement_route_groups(crossing, RouteGroups{2, false}, four_nodes, key);
            }),
            "");
}

// ---- partition ---------------------------------------------------------------------------------

// A co-activation matrix [E*E] with equal loads, weight `w(i, j)` between i != j.
template <class W>
std::vector<int64_t> matrix(int E, int64_t load, W w) {
  std::vector<int64_t> c(static_cast<size_t>(E * E), 0);
  for (int i = 0; i < E; ++i)
    for (int j = 0; j < E; ++j) c[static_cast<size_t>(i * E + j)] = i == j ? load : w(i, j);
  return c;
}

TEST(Partition, FindsTheKnownBestSplitOfAHandMadeMatrix) {
  // Nodes {0,3,5,6} and {1,2,4,7}; inside them the pairs {0,5} {3,6} and {1,7} {2,4}. Pairs of a
  // rank weigh 50, of a node 20, across nodes 2: any other split keeps less weight inside.
  const std::vector<int> node = {0, 1, 1, 0, 1, 0, 0, 1};
  const std::vector<int> pair = {0, 2, 3, 1, 3, 0, 1, 2};
  const auto c = matrix(8, 100, [&](int i, int j) -> int64_t {
    if (node[static_cast<size_t>(i)] != node[static_cast<size_t>(j)]) return 2;
    return pair[static_cast<size_t>(i)] == pair[static_cast<size_t>(j)] ? 50 : 20;
  });
  PartitionOptions o;
  o.nodes = 2;
  o.ranks_per_node = 2;
  const LayerPartition p = partition_layer(c.data(), 8, o);
  EXPECT_EQ(groups_of(p.rank_of, 2), (Sets{{0, 3, 5, 6}, {1, 2, 4, 7}}));
  EXPECT_EQ(groups_of(p.rank_of, 1), (Sets{{0, 5}, {3, 6}, {1, 7}, {2, 4}}));
  EXPECT_NEAR(p.load_ratio, 1.0, 1e-12);
  // The same structure with the experts renumbered at random is found just as well.
  const std::vector<int> perm = {5, 2, 7, 0, 3, 6, 1, 4};  // new id of old expert i
  std::vector<int64_t> cp(c.size());
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j)
      cp[static_cast<size_t>(perm[static_cast<size_t>(i)] * 8 + perm[static_cast<size_t>(j)])] =
          c[static_cast<size_t>(i * 8 + j)];
  const LayerPartition q = partition_layer(cp.data(), 8, o);
  Sets want;
  for (const auto& s : Sets{{0, 5}, {3, 6}, {1, 7}, {2, 4}}) {
    std::set<int> t;
    for (int e : s) t.insert(perm[static_cast<size_t>(e)]);
    want.insert(t);
  }
  EXPECT_EQ(groups_of(q.rank_of, 1), want);
}

TEST(Partition, KeepsTheExpectedLoadWithinTheImbalance) {
  // Experts 0 and 1 are chosen together most, but each carries 3x the load of 2 and 3: together
  // on one node they make it 1.5x the mean.
  std::vector<int64_t> c = matrix(4, 100, [](int i, int j) -> int64_t {
    return (i < 2 && j < 2) ? 90 : (i >= 2 && j >= 2) ? 30 : 10;
  });
  c[0] = c[5] = 300;
  PartitionOptions o;
  o.nodes = 2;
  o.ranks_per_node = 1;
  o.imbalance = 2.0;
  LayerPartition loose = partition_layer(c.data(), 4, o);
  EXPECT_EQ(groups_of(loose.rank_of, 1), (Sets{{0, 1}, {2, 3}}));
  EXPECT_NEAR(loose.load_ratio, 1.5, 1e-12);
  o.imbalance = 1.1;
  LayerPartition tight = partition_layer(c.data(), 4, o);
  EXPECT_LE(tight.load_ratio, 1.1);
  EXPECT_NE(tight.rank_of[0], tight.rank_of[1]);
}

TEST(Partition, ExactCountsAndTheBestBalanceWhenLoadsAreSkewed) {
  // Four heavy experts chosen together most: the cut wants them on one node, the loads (1.5x)
  // forbid it; each node still holds exactly 4 experts and the loads end within 1.1.
  std::vector<int64_t> c = matrix(8, 100, [](int i, int j) -> int64_t {
    return (i < 4 && j < 4) ? 1000 : (i >= 4 && j >= 4) ? 50 : 5;
  });
  for (int e = 0; e < 4; ++e) c[static_cast<size_t>(e * 9)] = 300;
  PartitionOptions o;
  o.nodes = 2;
  o.ranks_per_node = 2;
  o.imbalance = 1.1;
  const LayerPartition p = partition_layer(c.data(), 8, o);
  for (int r = 0; r < 4; ++r)
    EXPECT_EQ(std::count(p.rank_of.begin(), p.rank_of.end(), r), 2) << "rank " << r;
  EXPECT_LE(p.load_ratio, 1.1);
  // One expert carries most of the load: no split is within 1.1 (METIS's result is not even
  // exact in counts here); counts end exact and the two heaviest experts on different ranks.
  std::vector<int64_t> d = matrix(8, 10, [](int i, int j) -> int64_t { return 1 + (i + j) % 3; });
  d[0] = 1000;
  d[9] = 40;  // expert 1: the next heaviest
  o.ranks_per_node = 1;
  o.nodes = 4;
  const LayerPartition q = partition_layer(d.data(), 8, o);
  for (int r = 0; r < 4; ++r)
    EXPECT_EQ(std::count(q.rank_of.begin(), q.rank_of.end(), r), 2) << "rank " << r;
  EXPECT_NE(q.rank_of[0], q.rank_of[1]);  // the two heaviest apart
}

TEST(Partition, ABusiestExpertOverTheImbalanceDoesNotCostTheCut) {
  // One expert per rank (2 nodes x 2): the max rank load is the busiest expert's, 400 of a mean
  // 250 = 1.6x, wherever it goes. Pairs {0,1} and {2,3} are chosen together most; keeping them
  // makes the nodes 700 / 300 (1.4x their mean), within what the ranks reach anyway. Balancing
  // the nodes to 1.1 instead split both pairs, for the same 1.6x.
  const std::vector<int64_t> loads = {400, 300, 100, 200};
  std::vector<int64_t> c =
      matrix(4, 0, [](int i, int j) -> int64_t { return (i < 2) == (j < 2) ? 90 : 1; });
  for (int e = 0; e < 4; ++e) c[static_cast<size_t>(e * 5)] = loads[static_cast<size_t>(e)];
  PartitionOptions o;
  o.nodes = 2;
  o.ranks_per_node = 2;
  o.imbalance = 1.1;
  const LayerPartition p = partition_layer(c.data(), 4, o);
  EXPECT_EQ(groups_of(p.rank_of, 2), (Sets{{0, 1}, {2, 3}}));
  EXPECT_NEAR(p.load_ratio, 1.6, 1e-12);
  EXPECT_NEAR(p.load_floor, 1.6, 1e-12);
}

TEST(Partition, RanksBalanceEvenWhenANodesLoadsDoNotSplit) {
  // Nodes {0,1,2,3} {4,5,6,7} (600 each) by co-activation; inside the first, loads 300 100 100
  // 100 give a rank at least 400 (1.33x the mean 300). Swapping across nodes reaches <= 1.1
  // (e.g. ranks {0,5} {1,4} {2,6} {3,7}: 320 300 290 290).
  const std::vector<int64_t> loads = {300, 100, 100, 100, 200, 20, 190, 190};
  std::vector<int64_t> c =
      matrix(8, 0, [](int i, int j) -> int64_t { return (i < 4) == (j < 4) ? 40 : 1; });
  for (int e = 0; e < 8; ++e) c[static_cast<size_t>(e * 9)] = loads[static_cast<size_t>(e)];
  PartitionOptions o;
  o.nodes = 2;
  o.ranks_per_node = 2;
  o.imbalance = 1.1;
  const LayerPartition p = partition_layer(c.data(), 8, o);
  EXPECT_LE(p.load_ratio, 1.1);
  for (int r = 0; r < 4; ++r)
    EXPECT_EQ(std::count(p.rank_of.begin(), p.rank_of.end(), r), 2) << "rank " << r;
}

TEST(Partition, MovesOnlyWholeRouteGroupsBetweenNodes) {
  // Experts 0 and 2 (groups 0 and 1 of size 2) are chosen together most, then 4 and 6 ...
  const auto c = matrix(8, 100, [](int i, int j) -> int64_t { return (i % 2 == j % 2) ? 40 : 1; });
  PartitionOptions o;
  o.nodes = 2;
  o.ranks_per_node = 2;
  const LayerPartition free = partition_layer(c.data(), 8, o);
  EXPECT_EQ(groups_of(free.rank_of, 2), (Sets{{0, 2, 4, 6}, {1, 3, 5, 7}}));
  o.route_groups = 4;
  const LayerPartition grouped = partition_layer(c.data(), 8, o);
  const ExpertPlacement p = ExpertPlacement::from_ranks({grouped.rank_of}, 4, "t");
  EXPECT_NO_THROW(check_placement_route_groups(p, RouteGroups{4, false}, {0, 0, 1, 1}, "p"));
  // Groups of 4 over 4 nodes (G % R == 0): each keeps its 2 nodes.
  o.nodes = 4;
  o.ranks_per_node = 1;
  o.route_groups = 2;
  const LayerPartition blocks = partition_layer(c.data(), 8, o);
  const ExpertPlacement pb = ExpertPlacement::from_ranks({blocks.rank_of}, 4, "t");
  EXPECT_NO_THROW(check_placement_route_groups(pb, RouteGroups{2, false}, {0, 1, 2, 3}, "p"));
  // 3 groups do not divide 8 experts; 4 groups of 3 experts cannot stay whole over 3 nodes
  // (neither count divides the other).
  o.route_groups = 3;
  EXPECT_NE(usage_error([&] { partition_layer(c.data(), 8, o); })
                .find("route groups (--route-groups, or the run's moe.route_groups) = 3 do not "
                      "divide the layer's 8 experts"),
            std::string::npos);
  const auto c12 = matrix(12, 100, [](int, int) -> int64_t { return 1; });
  o.nodes = 3;
  o.ranks_per_node = 1;
  o.route_groups = 4;
  EXPECT_NE(usage_error([&] {
              partition_layer(c12.data(), 12, o);
            }).find("= 4: groups of 3 experts cannot move whole between 3 nodes"),
            std::string::npos);
}

// ---- counts and traffic ------------------------------------------------------------------------

Coactivation coactivation_of(int E, int K, const std::vector<int32_t>& topk) {
  Coactivation c;
  c.num_layers = 1;
  c.num_experts = E;
  c.top_k = K;
  c.counts.assign(static_cast<size_t>(E * E), 0);
  c.tokens = static_cast<int64_t>(topk.size()) / K;
  add_coactivation(c.counts.data(), E, topk.data(), c.tokens, K);
  c.sample = topk;
  return c;
}

TEST(Coactivation, CountsPairsAndLoadsOfHandMadeTokens) {
  // Tokens (0,1), (1,0), (2,3), (0,2); a -1 slot (no expert) counts nothing.
  const std::vector<int32_t> topk = {0, 1, 1, 0, 2, 3, 0, 2, 3, -1};
  std::vector<int64_t> c(16, 0);
  add_coactivation(c.data(), 4, topk.data(), 5, 2);
  const std::vector<int64_t> want = {3, 2, 1, 0,  //
                                     2, 2, 0, 0,  //
                                     1, 0, 2, 1,  //
                                     0, 0, 1, 2};
  EXPECT_EQ(c, want);
}

TEST(Coactivation, TrafficOfAPlacementMatchesHandCounts) {
  // k = 2 on 2 nodes of one rank: tokens (0,1) (0,1) (2,3) (0,2). Contiguous nodes {0,1} {2,3}
  // split one pair in 4: (1 + 1/4) nodes per token, half of them away: 0.625 rows per token.
  const Coactivation c = coactivation_of(4, 2, {0, 1, 0, 1, 2, 3, 0, 2});
  const LayerTraffic t = layer_traffic(c, 0, {0, 0, 1, 1}, 1);
  EXPECT_DOUBLE_EQ(t.internode_rows_per_token, 0.625);
  EXPECT_DOUBLE_EQ(t.pairs_in_node, 0.75);
  EXPECT_DOUBLE_EQ(t.pairs_in_rank, 0.75);
  // Loads 3,2,2,1 -> ranks 5 and 3, mean 4: 1.25.
  EXPECT_DOUBLE_EQ(t.load_ratio, 1.25);
  // Nodes {0,2} {1,3}: pairs (0,1) x2 and (2,3) split: (1 + 3/4) / 2.
  EXPECT_DOUBLE_EQ(layer_traffic(c, 0, {0, 1, 0, 1}, 1).internode_rows_per_token, 0.875);
  // Two ranks per node, one node: nothing crosses.
  EXPECT_DOUBLE_EQ(layer_traffic(c, 0, {0, 0, 1, 1}, 2).internode_rows_per_token, 0.0);
  // One expert per rank, two ranks per node {0,1} {2,3}: the pairs inside a node are not inside a
  // rank.
  const LayerTraffic r = layer_traffic(c, 0, {0, 1, 2, 3}, 2);
  EXPECT_DOUBLE_EQ(r.pairs_in_node, 0.75);
  EXPECT_DOUBLE_EQ(r.pairs_in_rank, 0.0);
  EXPECT_DOUBLE_EQ(r.internode_rows_per_token, 0.625);
  // k = 1: every token reaches one node, half of the time away from its sender's.
  const Coactivation c1 = coactivation_of(4, 1, {0, 2, 3});
  EXPECT_DOUBLE_EQ(layer_traffic(c1, 0, {0, 0, 1, 1}, 1).internode_rows_per_token, 0.5);

  // k = 3 from the sample: tokens (0,1,2) (1,2,3) on 2 nodes {0,1} {2,3}: both reach 2 nodes
  // (1 row away each); on 4 nodes: 3 nodes, 3/4 of them away (2.25).
  const Coactivation c3 = coactivation_of(4, 3, {0, 1, 2, 1, 2, 3});
  EXPECT_DOUBLE_EQ(layer_traffic(c3, 0, {0, 0, 1, 1}, 1).internode_rows_per_token, 1.0);
  EXPECT_DOUBLE_EQ(layer_traffic(c3, 0, {0, 1, 2, 3}, 1).internode_rows_per_token, 2.25);
}

TEST(Coactivation, FileReadsBackAndBadFilesNameThemselves) {
  test::TempDir dir;
  Coactivation c = coactivation_of(4, 2, {0, 1, 0, 1, 2, 3, 0, 2});
  c.first_step = 3;
  c.last_step = 10;
  c.sample_step = 10;
  const std::string path = dir.file("coactivation.h5");
  write_coactivation(path, c);
  const Coactivation r = read_coactivation(path);
  EXPECT_EQ(r.counts, c.counts);
  EXPECT_EQ(r.sample, c.sample);
  EXPECT_EQ(r.sample_tokens(), 4);
  EXPECT_EQ(r.tokens, 4);
  EXPECT_EQ(r.first_step, 3);
  EXPECT_EQ(r.last_step, 10);
  EXPECT_FALSE(r.routing.known());  // none recorded: none read
  // The routing, the file's and a checkpoint's, reads back; groups that limit nothing (a token
  // may use all 4) are plain top-k.
  c.routing = CoactivationRouting::of(4, 2);
  c.routing.other_steps = 5;
  c.checkpoints[0] = CoactivationAt{8, 2, c.counts, 0, 0, CoactivationRouting::of(4, 4)};
  write_coactivation(path, c);
  const Coactivation routed = read_coactivation(path);
  EXPECT_EQ(routed.routing.groups, 4);
  EXPECT_EQ(routed.routing.topk, 2);
  EXPECT_EQ(routed.routing.other_steps, 5);
  EXPECT_EQ(routed.checkpoints[0].routing.groups, 1);
  EXPECT_EQ(routed.checkpoints[0].routing.topk, 1);
  EXPECT_EQ(routed.checkpoints[0].routing.other_steps, 0);
  EXPECT_EQ(routed.checkpoints[0].routing.describe(), "plain top-k");
  write_text(dir.file("text.h5"), "not hdf5\n");
  EXPECT_NE(usage_error([&] { read_coactivation(dir.file("text.h5")); }).find("text.h5"),
            std::string::npos);
  EXPECT_NE(usage_error([&] { read_coactivation(dir.file("absent.h5")); }).find("absent.h5"),
            std::string::npos);
}

// A dataspace that says more than the file holds (a damaged file: one flipped bit made an axis
// 1.5e9 long, which HDF5 1.10 opens) is refused naming the dataset before anything is allocated;
// it was allocated as read, and `placement` ended "fatal: out of memory" (exit 1; QA). Here a
// /sample of 10^12 tokens never written (HDF5 allocates no storage for it); and /counts whose
// shape disagrees with the attributes is said with both.
TEST(Coactivation, ADatasetLargerThanItsFileIsRefusedBeforeItIsAllocated) {
  test::TempDir dir;
  const std::string path = dir.file("coactivation.h5");
  const auto replace = [&](const char* name, std::vector<hsize_t> dims) {
    write_coactivation(path, coactivation_of(4, 2, {0, 1, 0, 1, 2, 3, 0, 2}));
    h5::ErrorSilencer quiet;
    h5::File f{H5_CHECK(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT))};
    H5_CHECK(H5Ldelete(f, name, H5P_DEFAULT));
    h5::Dataspace space{H5_CHECK(H5Screate_simple(3, dims.data(), nullptr))};
    h5::Dataset ds{
        H5_CHECK(H5Dcreate2(f, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT))};
  };
  replace("sample", {1, 1000000000000, 2});
  const std::string big = usage_error([&] { read_coactivation(path); });
  EXPECT_NE(big.find("/sample is [1, 1000000000000, 2], more than the file's"), std::string::npos)
      << big;
  replace("counts", {1, 4, 1526726660});
  const std::string shape = usage_error([&] { read_coactivation(path); });
  EXPECT_NE(shape.find("/counts is [1, 4, 1526726660], not [num_layers, num_experts, "
                       "num_experts]"),
            std::string::npos)
      << shape;
}

// A co-activation file that cannot fit (a full run.out_dir; here the file size limit) is one
// message naming it, before HDF5 writes anything (a failed HDF5 write printed pages of errors),
// and the previous file is kept.
TEST(Coactivation, AFileThatCannotFitIsRefusedBeforeWritingKeepingThePreviousOne) {
  test::TempDir dir;
  Coactivation c = coactivation_of(4, 2, {0, 1, 0, 1, 2, 3, 0, 2});
  const std::string path = dir.file("coactivation.h5");
  write_coactivation(path, c);
  const Coactivation before = read_coactivation(path);
  c.counts.resize(c.counts.size() * 200000, 1);  // 200000 layers' counts: 25 MiB
  c.num_layers *= 200000;
  c.sample.clear();
  {
    const test::FileSizeLimit limit(1 << 20);
    try {
      write_coactivation(path, c);
      ADD_FAILURE() << "a 25 MiB file written under a 1 MiB limit";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), kExitOther) << e.what();
      EXPECT_NE(std::string(e.what()).find("'" + path + "'"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("file size limit (ulimit -f)"), std::string::npos)
          << e.what();
    }
  }
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_EQ(read_coactivation(path).counts, before.counts);
}

}  // namespace
}  // namespace sy
