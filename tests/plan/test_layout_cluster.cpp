// Layout enumeration and node spans (src/plan/layout.h) by hand, and cluster files
// (src/plan/cluster.h): the shipped ones parse, errors name the key, YAML round-trips.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <tuple>

#include "common/temp_dir.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/placement/coactivation_file.h"
#include "src/plan/cluster.h"
#include "src/plan/io/plan_inputs.h"
#include "src/plan/layout.h"

namespace sy::plan {
namespace {

TEST(PlanLayout, NodeSpansFollowTheRankOrder) {
  PlanLayout l;
  l.world = 8;
  l.ranks_per_node = 2;
  l.ep = 4;
  l.etp = 1;
  EXPECT_EQ(l.ep_nodes(), 2);  // EP ranks 0..3 are global ranks 0..3: nodes 0, 0, 1, 1
  l.etp = 2;
  EXPECT_EQ(l.ep_nodes(), 4);  // global ranks 0, 2, 4, 6
  l.ep = 2;
  l.etp = 1;
  EXPECT_EQ(l.ep_nodes(), 1);
  EXPECT_FALSE(l.spans_nodes(1, 2));  // a tp pair on one node
  EXPECT_TRUE(l.spans_nodes(2, 4));   // ranks 0, 2, 4, 6
}

// 2 heads, 4 experts, ffn 2, global batch 4 of micro-batch 1: the enumerations by hand below.
Config four_expert_config() {
  Config cfg;
  cfg.model.n_heads = 2;
  cfg.model.d_model = 8;
  cfg.moe.num_experts = 4;
  cfg.moe.ffn_hidden = 2;
  cfg.train.global_batch = 4;
  cfg.train.micro_batch = 1;
  return cfg;
}

TEST(PlanLayout, EnumerationByHand) {
  // 4 ranks, 2 per node.
  const Config cfg = four_expert_config();
  std::set<std::string> got;
  for (const PlanLayout& l : enumerate_layouts(cfg, 4, 2)) {
    EXPECT_EQ(layout_problem(cfg, l), "") << l.describe();
    EXPECT_TRUE(got.insert(l.describe()).second) << "twice: " << l.describe();
  }
  // tp in {1, 2}; (ep, etp) in {(1,1), (2,1), (4,1), (1,2), (2,2)}; zero1 both ways (every
  // layout here has dp > 1 or edp > 1); flat, or when the EP group spans both nodes (ep = 4,
  // and ep = 2 with etp = 2: global ranks 0 and 2) also hierarchical over ucx and mpi.
  std::set<std::string> want;
  for (int tp : {1, 2})
    for (auto [ep, etp] : {std::pair{1, 1}, {2, 1}, {4, 1}, {1, 2}, {2, 2}})
      for (bool z : {false, true}) {
        const std::string base = "dp=" + std::to_string(4 / tp) + " tp=" + std::to_string(tp) +
                                 " ep=" + std::to_string(ep) + " etp=" + std::to_string(etp) +
                                 " mb=1" + (z ? " zero1" : "");
        if (ep == 1) {
          want.insert(base);
          continue;
        }
        want.insert(base + " flat");
        if (ep * etp == 4) {
          want.insert(base + " hier/ucx");
          want.insert(base + " hier/mpi");
        }
      }
  EXPECT_EQ(got, want);
}

// A cluster file may hold up to 2^40 ranks: the layouts of 2^40 come at once (the divisors of the
// world were found by a loop to 2^40, some 45 hours; QA). Every one divides the world, and the
// config's 4 experts and 2 heads bound ep and tp.
TEST(PlanLayout, TheLayoutsOfTwoToTheFortyRanksComeAtOnce) {
  const Config cfg = four_expert_config();
  const int64_t world = int64_t{1} << 40;
  const std::vector<PlanLayout> layouts = enumerate_layouts(cfg, world, 8);
  for (const PlanLayout& l : layouts) {
    EXPECT_EQ(world % (l.tp * l.ep * l.etp), 0) << l.describe();
    EXPECT_LE(l.ep, 4) << l.describe();
  }
}

// device: cuda has one exchange (comm/gpu_exchange.h: hierarchical, MPI between nodes), so the
// same enumeration by hand has no flat or UCX variant where the EP group spans nodes, no ZeRO-1
// or etp > 1 (the GPU trainer runs neither), and the printed flags leave parallel.a2a and
// parallel.internode out (QA: the table ranked "flat" and "hier/ucx" rows a GPU run cannot be).
TEST(PlanLayout, TheGpuHasOneExchange) {
  Config cfg = four_expert_config();
  cfg.device = Device::kCuda;
  std::set<std::string> got;
  for (const PlanLayout& l : enumerate_layouts(cfg, 4, 2)) {
    EXPECT_TRUE(got.insert(l.describe()).second) << "twice: " << l.describe();
    EXPECT_EQ(l.set_flags().find("parallel.a2a"), std::string::npos) << l.set_flags();
    EXPECT_EQ(l.set_flags().find("parallel.internode"), std::string::npos) << l.set_flags();
  }
  std::set<std::string> want;
  for (int tp : {1, 2})
    for (int ep : {1, 2, 4}) {
      const std::string base = "dp=" + std::to_string(4 / tp) + " tp=" + std::to_string(tp) +
                               " ep=" + std::to_string(ep) + " etp=1 mb=1";
      want.insert(ep == 1 ? base : ep == 2 ? base + " flat" : base + " hier/mpi");
    }
  EXPECT_EQ(got, want);
  cfg.parallel.ep = 4;
  cfg.parallel.a2a = A2aKind::kFlat;  // what the config says does not change what the GPU runs
  cfg.parallel.internode = InternodeKind::kUcx;
  const PlanLayout run = layout_of_config(cfg, 4, 2);
  EXPECT_EQ(run.describe(), "dp=4 tp=1 ep=4 etp=1 mb=1 hier/mpi");
}

// EP groups that straddle nodes unevenly (some within a node, some across; or 4 + 2 ranks) are
// refused: the planner costs group 0 for all, and the trainer picks one all-to-all for the run.
TEST(PlanLayout, EpGroupsSplitUnevenlyOverNodesAreRefused) {
  Config cfg;
  cfg.moe.num_experts = 12;
  cfg.train.global_batch = 24;
  cfg.train.micro_batch = 1;
  PlanLayout l;
  l.world = 12;
  l.ranks_per_node = 4;
  for (const auto& [ep, refused] : {std::pair{3, true}, std::pair{6, true}, std::pair{2, false},
                                    std::pair{4, false}, std::pair{12, false}}) {
    l.ep = ep;
    EXPECT_EQ(
        layout_problem(cfg, l).find("split unevenly over nodes of 4 ranks") != std::string::npos,
        refused)
        << "ep " << ep << ": " << layout_problem(cfg, l);
  }
}

// Nodes are whole, as the trainer requires of parallel.ranks_per_node (3 ranks on nodes of 2:
// the planner printed flags the trainer refused).
TEST(PlanLayout, RanksThatDoNotFillWholeNodesAreRefused) {
  Config cfg;
  cfg.train.global_batch = 12;
  PlanLayout l;
  l.world = 3;
  l.ranks_per_node = 2;
  EXPECT_NE(
      layout_problem(cfg, l).find("parallel.ranks_per_node=2 does not divide the world size 3"),
      std::string::npos)
      << layout_problem(cfg, l);
  l.world = 4;
  EXPECT_EQ(layout_problem(cfg, l), "");
  for (const PlanLayout& lay : enumerate_layouts(cfg, 3, 2)) ADD_FAILURE() << lay.describe();
}

// route_groups: nodes with an expert's etp ranks on two nodes is refused, as the trainer does.
TEST(PlanLayout, NodeLimitedRoutingNeedsEachExpertOnOneNode) {
  Config cfg =
      parse_config("data:\n  path: x.h5\n", {"moe.num_experts=8", "moe.route_groups=nodes",
                                             "moe.route_groups_topk=1", "train.global_batch=8"});
  PlanLayout l;
  l.world = 4;
  l.ep = 2;
  l.etp = 2;
  l.ranks_per_node = 1;
  EXPECT_NE(layout_problem(cfg, l).find("each expert's parallel.etp ranks on one node"),
            std::string::npos)
      << layout_problem(cfg, l);
  l.ranks_per_node = 2;  // each etp pair on its node: R = 2 nodes
  EXPECT_EQ(layout_problem(cfg, l), "");
}

TEST(PlanLayout, MicroBatchIsLoweredWhenDpNeedsIt) {
  Config cfg;
  cfg.train.global_batch = 12;
  cfg.train.micro_batch = 8;
  for (const PlanLayout& l : enumerate_layouts(cfg, 4, 4)) {
    if (l.tp == 1) {
      EXPECT_EQ(l.micro_batch, 3) << l.describe();  // 12 / dp 4 = 3
    }
  }
  EXPECT_NE(layout_of_config(cfg, 4, 4).set_flags().find("--set parallel.tp=1"), std::string::npos);
}

// The flags `plan` prints run the layout it planned: applied to the config and started on one
// host (as on this machine, where 2 nodes are emulated), they give the same layout, the nodes
// included (without parallel.ranks_per_node the run was one node).
TEST(PlanLayout, PrintedFlagsRunThePlannedLayoutOnOneHost) {
  Config cfg;
  cfg.data.path = "x.h5";
  cfg.train.global_batch = 8;
  cfg.train.micro_batch = 2;
  const std::vector<PlanLayout> layouts = enumerate_layouts(cfg, 4, 2);
  ASSERT_FALSE(layouts.empty());
  for (const PlanLayout& lay : layouts) {
    std::vector<std::string> sets;
    std::istringstream words(lay.set_flags());
    for (std::string w; words >> w;)
      if (w != "--set") sets.push_back(w);
    const Config run = parse_config("data:\n  path: x.h5\ntrain:\n  global_batch: 8\n", sets);
    const PlanLayout got = layout_of_config(run, 4, /*host_ranks=*/4);
    EXPECT_EQ(got.describe(), lay.describe()) << lay.set_flags();
    EXPECT_EQ(got.nodes(), 2) << lay.set_flags();
  }
  // A config with emulated nodes of 1 rank, planned on one node of 2: the flags make it one
  // node (without them the run kept the config's 2 nodes and moved tokens between them).
  Config emulated = cfg;
  emulated.parallel.ranks_per_node = 1;
  for (const PlanLayout& lay : enumerate_layouts(emulated, 2, 2)) {
    std::vector<std::string> sets = {"parallel.ranks_per_node=1"};
    std::istringstream words(lay.set_flags());
    for (std::string w; words >> w;)
      if (w != "--set") sets.push_back(w);
    const Config run = parse_config("data:\n  path: x.h5\ntrain:\n  global_batch: 8\n", sets);
    EXPECT_EQ(layout_of_config(run, 2, 2).nodes(), 1) << lay.set_flags();
  }
}

const char* kCluster = R"(name: test
nodes: 2
ranks_per_node: 4
memory_bytes: 8e9
base_bytes: 1e8
compute: {gemm_flops: 1e12, gemm_half_dim: 64, mem_bandwidth: 1e11}
links:
  intra: {bandwidth: 1e10, latency_s: 1e-6}
  inter: {bandwidth: 1e9, latency_s: 5e-6, shared_by_node: true}
)";

TEST(PlanCluster, ParsesAndRoundTrips) {
  const Cluster c = parse_cluster(kCluster, "test");
  EXPECT_EQ(c.max_ranks(), 8);
  EXPECT_DOUBLE_EQ(c.gemm_half_dim, 64);
  EXPECT_TRUE(c.inter.shared_by_node);
  EXPECT_DOUBLE_EQ(c.mpi_inter().bandwidth, 1e9);  // no inter_mpi: the inter link
  const Cluster back = parse_cluster(cluster_to_yaml(c, "# comment\n"), "back");
  EXPECT_EQ(back.name, c.name);
  EXPECT_DOUBLE_EQ(back.inter.latency_s, c.inter.latency_s);
  EXPECT_DOUBLE_EQ(back.memory_bytes, c.memory_bytes);
  // one host's cores, thread efficiency and the compute terms past the GEMMs
  const Cluster host = parse_cluster(
      std::string(kCluster) + "one_host: true\ncores: 16\nthread_efficiency: 0.9\n", "host");
  EXPECT_EQ(host.cores, 16);
  EXPECT_DOUBLE_EQ(host.thread_efficiency, 0.9);
  EXPECT_DOUBLE_EQ(host.elementwise_rate(), 1e11);  // none given: mem_bandwidth
  std::string t = kCluster;
  t.replace(t.find("mem_bandwidth: 1e11"), 19,
            "mem_bandwidth: 1e11, elementwise_bandwidth: 3e10, layer_overhead_s: 2e-4");
  const Cluster more = parse_cluster(cluster_to_yaml(parse_cluster(t, "t"), ""), "back");
  EXPECT_DOUBLE_EQ(more.elementwise_rate(), 3e10);
  EXPECT_DOUBLE_EQ(more.layer_overhead_s, 2e-4);
  EXPECT_EQ(back.cores, 0);
  EXPECT_DOUBLE_EQ(back.thread_efficiency, 1);
}

TEST(PlanCluster, ErrorsNameTheKey) {
  auto message = [](const std::string& text) {
    try {
      parse_cluster(text, "'bad.yaml'");
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string t = kCluster;
  EXPECT_NE(message(t + "colour: red\n").find("colour: unknown key"), std::string::npos);
  EXPECT_NE(
      message(std::string(kCluster).replace(t.find("gemm_flops: 1e12"), 16, "gemm_flops: fast"))
          .find("compute.gemm_flops"),
      std::string::npos);
  EXPECT_NE(message("name: x\nnodes: 1\nranks_per_node: 1\n").find("compute"), std::string::npos);
  EXPECT_NE(message(std::string(kCluster).replace(t.find("nodes: 2"), 8, "nodes: 0")).find("nodes"),
            std::string::npos);
  EXPECT_NE(message(t + "thread_efficiency: 1.5\n").find("thread_efficiency"), std::string::npos);
  // A list or a mapping where a number belongs is named as such ("got '?'" before).
  std::string listed = kCluster;
  listed.replace(listed.find("nodes: 2"), 8, "nodes: [1, 2]");
  EXPECT_NE(message(listed).find("nodes: expected an integer, got a list"), std::string::npos)
      << message(listed);
  std::string mapped = kCluster;
  mapped.replace(mapped.find("gemm_flops: 1e12"), 16, "gemm_flops: {a: 1}");
  EXPECT_NE(message(mapped).find("gemm_flops: expected a number, got a mapping"), std::string::npos)
      << message(mapped);
  // A quote not closed read the rest of the file as the name ("nodes: missing" before).
  const std::string open_quote = "name: \"x\n" + t.substr(t.find('\n') + 1);
  EXPECT_NE(message(open_quote).find("'bad.yaml': YAML syntax error at line"), std::string::npos)
      << message(open_quote);
  EXPECT_NE(message(open_quote).find("a quote opened and not closed"), std::string::npos);
  // A key given twice (yaml-cpp kept the first: a second `nodes: 4` was silently ignored).
  EXPECT_NE(message(t + "nodes: 4\n").find("nodes: duplicate key"), std::string::npos)
      << message(t + "nodes: 4\n");
  // Seconds given in another unit (5 meant as 5 us) were planned as seconds per message.
  std::string slow = kCluster;
  slow.replace(slow.find("latency_s: 5e-6"), 15, "latency_s: 5");
  EXPECT_NE(message(slow).find("links.inter.latency_s: got 5, expected at most 1"),
            std::string::npos)
      << message(slow);
  slow = kCluster;
  slow.replace(slow.find("mem_bandwidth: 1e11"), 19,
               "mem_bandwidth: 1e11, layer_overhead_s: 1e300");
  EXPECT_NE(message(slow).find("compute.layer_overhead_s"), std::string::npos) << message(slow);
  // Shapes yaml-cpp cannot convert (exit 1 "bad conversion" before), a section that is not a
  // mapping (its name ran into the message), and a rank count past int64 (plan divided by 0).
  std::string named = kCluster;
  named.replace(0, 10, "name: [a, b]");
  EXPECT_NE(message(named).find("'bad.yaml': name: expected a string"), std::string::npos)
      << message(named);
  EXPECT_NE(message(t + "{a: 1}: 3\n").find("a key that is not a name"), std::string::npos)
      << message(t + "{a: 1}: 3\n");
  std::string links = kCluster;
  links.replace(links.find("links:"), std::string::npos, "links: {intra: 5}\n");
  EXPECT_NE(message(links).find("links.intra: expected a mapping"), std::string::npos)
      << message(links);
  // Integers in decimal and numbers unquoted, as the config reads them: "2" was 2 nodes, 010 was
  // 8, and a quoted gemm_flops a number. A rate below 1 per second (1e-308 passed "> 0") made
  // every predicted time inf, and the tables "-nan" in every row, ranked at random (QA).
  for (const auto& [from, to, key] :
       {std::tuple{"nodes: 2", "nodes: \"2\"", "nodes: expected an integer"},
        std::tuple{"nodes: 2", "nodes: 0x2", "nodes: expected an integer"},
        std::tuple{"gemm_flops: 1e12", "gemm_flops: '1e12'", "compute.gemm_flops: expected a"},
        std::tuple{"gemm_flops: 1e12", "gemm_flops: 1e-308",
                   "compute.gemm_flops: got 1e-308, must"},
        std::tuple{"mem_bandwidth: 1e11", "mem_bandwidth: 0.5",
                   "compute.mem_bandwidth: got 0.5, must"},
        std::tuple{"bandwidth: 1e10", "bandwidth: 1e-308",
                   "links.intra.bandwidth: got 1e-308, "
                   "must be at least 1 per second"},
        // Every value below the least rate said alike (-1 was ">= 0", 0 "> 0", 0.5 "at least 1").
        std::tuple{"gemm_flops: 1e12", "gemm_flops: -1e11",
                   "compute.gemm_flops: got -1e11, must be at least 1 per second"},
        std::tuple{"gemm_flops: 1e12", "gemm_flops: 0",
                   "compute.gemm_flops: got 0, must be at least 1 per second"},
        std::tuple{"bandwidth: 1e10", "bandwidth: -1e9",
                   "links.intra.bandwidth: got -1e9, must be at least 1 per second"},
        std::tuple{"mem_bandwidth: 1e11", "mem_bandwidth: 1e11, elementwise_bandwidth: -3",
                   "compute.elementwise_bandwidth: got -3, must be 0 (not given) or at least 1"},
        std::tuple{"mem_bandwidth: 1e11", "mem_bandwidth: .nan",
                   "compute.mem_bandwidth: got .nan, not a finite rate"},
        std::tuple{"gemm_flops: 1e12", "gemm_flops: .inf",
                   "compute.gemm_flops: got .inf, not a finite rate"}}) {
    std::string q = kCluster;
    q.replace(q.find(from), std::string(from).size(), to);
    EXPECT_NE(message(q).find(key), std::string::npos) << to << ": " << message(q);
  }
  std::string octal = kCluster;
  octal.replace(octal.find("nodes: 2"), 8, "nodes: 010");
  EXPECT_EQ(parse_cluster(octal, "'010.yaml'").nodes, 10);
  std::string huge = kCluster;
  huge.replace(huge.find("nodes: 2"), 8, "nodes: 4611686018427387904");
  EXPECT_NE(message(huge).find("nodes: nodes x ranks_per_node = 4611686018427387904 x 4"),
            std::string::npos)
      << message(huge);
}

TEST(PlanCluster, ShippedFilesParse) {
  const std::filesystem::path dir = std::filesystem::path(SWITCHYARD_SOURCE_DIR) / "clusters";
  int n = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir)) {
    if (f.path().extension() != ".yaml") continue;
    const Cluster c = load_cluster(f.path().string());
    EXPECT_GT(c.gemm_flops, 0) << f.path();
    ++n;
  }
  EXPECT_GE(n, 3);
}

// --routing <run dir>: the mean expert_load of the logged steps, renormalised per layer; a run of
// another expert count is refused, and one of another depth is said in the source line (before,
// the last measured layer silently stood in for the missing ones).
// The memory limit of this process's cgroups, on a hand-made /sys/fs/cgroup: a job's limit sits
// in a nested group (SLURM's ConstrainRAMSpace), which reading only the root missed; the lowest
// of the group and its ancestors counts, "max" and v1's 2^63 are no limit.
TEST(PlanInputs, TheCgroupLimitIsTheLowestOfTheProcesssGroups) {
  namespace fs = std::filesystem;
  sy::test::TempDir dir;
  const fs::path root = dir.path();
  auto put = [&](const fs::path& file, const std::string& value) {
    fs::create_directories(file.parent_path());
    std::ofstream(file) << value << "\n";
  };
  put(root / "memory.max", "max");
  put(root / "slurm/uid_0/job_7/memory.max", "2147483648");
  put(root / "slurm/uid_0/job_7/step_0/memory.max", "max");
  put(root / "slurm/memory.max", "8589934592");
  const std::string v2 = "0::/slurm/uid_0/job_7/step_0\n";
  EXPECT_DOUBLE_EQ(cgroup_memory_limit(v2, root.string()), 2147483648.0);
  EXPECT_DOUBLE_EQ(cgroup_memory_limit("0::/\n", root.string()), 0.0);
  // v1: the memory controller's line (here beside others) under root/memory.
  put(root / "memory/memory.limit_in_bytes", "9223372036854771712");
  put(root / "memory/process_api/abc/memory.limit_in_bytes", "1073741824");
  const std::string v1 = "5:devices:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/\n0::/\n";
  EXPECT_DOUBLE_EQ(cgroup_memory_limit(v1, root.string()), 1073741824.0);
  EXPECT_DOUBLE_EQ(cgroup_memory_limit("", root.string()), 0.0);
}

TEST(PlanInputs, ARunsRoutingIsItsMeanLoadAndAnotherDepthIsSaid) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("plan_routing_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "metrics.jsonl")
      << R"({"step":1,"loss":5.0,"expert_load":[[0.4,0.2,0.2,0.2],[0.25,0.25,0.25,0.25]]})"
         "\n"
      << R"({"step":2,"loss":4.9,"expert_load":[[0.2,0.4,0.2,0.2],[0.25,0.25,0.25,0.25]]})"
         "\n";
  Config cfg;
  cfg.model.n_layers = 2;
  cfg.moe.num_experts = 4;
  cfg.moe.top_k = 2;
  RoutingStats r = load_routing(dir.string(), cfg);
  ASSERT_EQ(r.load.size(), 2u);
  EXPECT_NEAR(r.load[0][0], 0.3, 1e-12);
  EXPECT_NEAR(r.load[0][1], 0.3, 1e-12);
  EXPECT_NEAR(r.load[0][2], 0.2, 1e-12);
  EXPECT_NEAR(r.peak_load[0][0], 0.4, 1e-12);
  EXPECT_EQ(r.source.find("note:"), std::string::npos) << r.source;
  cfg.model.n_layers = 3;
  r = load_routing(dir.string(), cfg);
  EXPECT_NE(r.source.find("note: the run measured 2 layers, the config has model.n_layers = 3: "
                          "layers past 2 use its last one"),
            std::string::npos)
      << r.source;
  cfg.moe.num_experts = 8;
  EXPECT_THROW(load_routing(dir.string(), cfg), UsageError);
  // Loads that are not fractions of the assignments: refused naming the step, layer and value
  // (1e308 priced a step of "-nan ms", all zeros memory below the uniform's: exit 0, QA).
  cfg.moe.num_experts = 4;
  cfg.model.n_layers = 2;
  const auto refused = [&](const std::string& load) {
    std::ofstream(dir / "metrics.jsonl")
        << R"({"step":1,"loss":5.0,"expert_load":[[0.25,0.25,0.25,0.25],[0.25,0.25,0.25,0.25]]})"
           "\n"
        << R"({"step":7,"loss":4.9,"expert_load":[[0.25,0.25,0.25,0.25],)" << load << "]}\n";
    try {
      load_routing(dir.string(), cfg);
    } catch (const UsageError& e) {
      return std::string(e.what());
    }
    return std::string("(not refused)");
  };
  EXPECT_EQ(refused("[1e308,1e308,0,0]"),
            "--routing '" + dir.string() +
                "': metrics.jsonl step 7, expert_load layer 1, expert 0: 1e+308 is not a "
                "fraction of the assignments (in [0, 1])");
  EXPECT_NE(refused("[-0.5,0.5,0.5,0.5]").find("layer 1, expert 0: -0.5 is not a fraction"),
            std::string::npos);
  EXPECT_NE(refused("[0,0,0,0]").find("step 7, expert_load layer 1: its fractions sum to 0, not 1"),
            std::string::npos);
  EXPECT_NE(refused("[0.5,0.5,0.5,0.5]").find("sum to 2, not 1"), std::string::npos);
  EXPECT_EQ(refused("[0.2501,0.25,0.25,0.25]"), "(not refused)");  // a rounded line
  std::filesystem::remove_all(dir);
}

// The trainer's coactivation.h5 (src/placement/coactivation_file.h, written here by its writer):
// the pair counts come back as fractions of the tokens counted, the sample per layer.
TEST(PlanInputs, ReadsTheTrainersCoactivationFile) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("plan_coact_" + std::to_string(getpid()) + ".h5"))
          .string();
  Coactivation file;
  file.num_layers = 1;
  file.num_experts = 4;
  file.top_k = 2;
  file.tokens = 4;
  // Tokens {0,1}, {0,2}, {2,3}, {1,3}: pair counts and loads (diagonal 2 each).
  file.counts.assign(16, 0);
  for (auto [i, j] : {std::pair{0, 1}, {0, 2}, {2, 3}, {1, 3}}) {
    file.counts[static_cast<size_t>(i * 4 + j)] += 1;
    file.counts[static_cast<size_t>(j * 4 + i)] += 1;
  }
  for (int i = 0; i < 4; ++i) file.counts[static_cast<size_t>(i * 5)] = 2;
  file.sample = {0, 1, 0, 2, 2, 3, 1, 3};
  write_coactivation(path, file);

  RoutingStats c;
  EXPECT_TRUE(load_coactivation(path, 4, 2, c));
  ASSERT_EQ(c.pairs.size(), 1u);
  EXPECT_DOUBLE_EQ(c.pairs[0][0 * 4 + 1], 0.25);  // 1 of 4 tokens chose both 0 and 1
  EXPECT_DOUBLE_EQ(c.pairs[0][0 * 4 + 3], 0.0);
  ASSERT_EQ(c.sample.size(), 1u);
  EXPECT_EQ(c.sample[0], file.sample);
  EXPECT_EQ(c.sample_k, 2);
  // Another model's file names the file and the key; a missing one is "not measured".
  RoutingStats other;
  try {
    load_coactivation(path, 8, 2, other);
    ADD_FAILURE() << "8 experts accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("moe.num_experts"), std::string::npos) << e.what();
  }
  // Pairs and a sample of top-2 tokens would be counted as another k's (before: accepted).
  try {
    load_coactivation(path, 4, 3, other);
    ADD_FAILURE() << "top-k 3 accepted";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("moe.top_k = 3"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
  RoutingStats none;
  EXPECT_FALSE(load_coactivation("/nonexistent/coactivation.h5", 4, 2, none));
  EXPECT_TRUE(none.pairs.empty());
  EXPECT_TRUE(none.sample.empty());
}

}  // namespace
}  // namespace sy::plan
