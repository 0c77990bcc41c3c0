// Layout enumeration and node spans (src/plan/layout.h) by hand, and cluster files
// (src/plan/cluster.h): the shipped ones parse, errors name the key, YAML round-trips.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "src/core/error.h"
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

TEST(PlanLayout, EnumerationByHand) {
  // 4 ranks, 2 per node; 2 heads, 4 experts, ffn 2, global batch 4 of micro-batch 1.
  Config cfg;
  cfg.model.n_heads = 2;
  cfg.model.d_model = 8;
  cfg.moe.num_experts = 4;
  cfg.moe.ffn_hidden = 2;
  cfg.train.global_batch = 4;
  cfg.train.micro_batch = 1;
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

// The trainer's coactivation.h5 (src/placement/coactivation_file.h): /counts int64 [L, E, E],
// root attribute `tokens`, /sample int32 [L, S, K]; pairs come back as fractions of tokens.
TEST(PlanInputs, ReadsTheTrainersCoactivationFile) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("plan_coact_" + std::to_string(getpid()) + ".h5"))
          .string();
  const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  const int64_t tokens = 4;
  const hid_t scalar = H5Screate(H5S_SCALAR);
  const hid_t a = H5Acreate2(f, "tokens", H5T_STD_I64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT64, &tokens);
  H5Aclose(a);
  H5Sclose(scalar);
  // Tokens {0,1}, {0,2}, {2,3}, {1,3}: pair counts and loads (diagonal 2 each).
  std::vector<int64_t> counts(16, 0);
  for (auto [i, j] : {std::pair{0, 1}, {0, 2}, {2, 3}, {1, 3}}) {
    counts[static_cast<size_t>(i * 4 + j)] += 1;
    counts[static_cast<size_t>(j * 4 + i)] += 1;
  }
  for (int i = 0; i < 4; ++i) counts[static_cast<size_t>(i * 5)] = 2;
  const std::vector<int32_t> sample = {0, 1, 0, 2, 2, 3, 1, 3};
  auto put = [&](const char* name, hid_t file_type, hid_t mem_type, std::vector<hsize_t> dims,
                 const void* data) {
    const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
    const hid_t ds = H5Dcreate2(f, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    H5Dclose(ds);
    H5Sclose(space);
  };
  put("counts", H5T_STD_I64LE, H5T_NATIVE_INT64, {1, 4, 4}, counts.data());
  put("sample", H5T_STD_I32LE, H5T_NATIVE_INT32, {1, 4, 2}, sample.data());
  H5Fclose(f);

  const CoactivationStats c = read_coactivation_stats(path, 4, 2);
  std::filesystem::remove(path);
  ASSERT_EQ(c.pairs.size(), 1u);
  EXPECT_DOUBLE_EQ(c.pairs[0][0 * 4 + 1], 0.25);  // 1 of 4 tokens chose both 0 and 1
  EXPECT_DOUBLE_EQ(c.pairs[0][0 * 4 + 3], 0.0);
  ASSERT_EQ(c.sample.size(), 1u);
  EXPECT_EQ(c.sample[0], sample);
  EXPECT_EQ(c.sample_k, 2);
  EXPECT_TRUE(read_coactivation_stats("/nonexistent/coactivation.h5", 4, 2).pairs.empty());
}

}  // namespace
}  // namespace sy::plan
