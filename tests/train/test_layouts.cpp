// Layout equivalence, the central test of the parallel trainer (issue 3, SPEC section 4): with
// dropless routing, a fixed seed and global batch, and the default sequence-scoped aux loss,
// every layout's per-step loss over 10 steps equals the 1-rank run's within 1e-5 relative, its
// final parameters (assembled as global tensors) match within a stated tolerance, and every
// replicated parameter is bitwise identical on all the ranks that hold it.
//
// Runs in the np=8 instance of test_train: each layout trains on the first n ranks (a sub-world
// made with MPI_Comm_split), the reference on rank 0 alone. Nodes are emulated with
// parallel.ranks_per_node, the hierarchical all-to-all's inter-node leg goes over UCX on TCP.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "comm/mpi.h"
#include "common/mpi_util.h"
#include "common/temp_dir.h"
#include "common/train_util.h"
#include "src/ckpt/checkpoint.h"
#include "src/config/config.h"
#include "src/data/tokens.h"
#include "src/train/trainer.h"

namespace sy {
namespace {

using test::world_rank;
using test::world_size;

// Per-tensor ||a - b|| / ||b||: final parameters after 10 AdamW steps. Adam divides by
// sqrt(v), so a gradient that differs in its last bits (summation order) moves an element by up
// to ~lr * 1e-6 relative per step; 1e-4 leaves two orders of magnitude for 10 steps.
constexpr double kParamTolerance = 1e-4;
constexpr double kLossTolerance = 1e-5;

struct Layout {
  std::string name;
  int ranks;
  std::vector<std::string> set;
};

class Layouts : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (world_size() != 8) return;
    // Rank 0's directory holds the data and every run's out_dir (its checkpoint.dir must be one
    // directory every rank sees: the trainer checks it at start).
    if (world_rank() == 0) dir_ = std::make_unique<test::TempDir>();
    std::string path = world_rank() == 0 ? dir_->path().string() : std::string();
    if (world_rank() == 0) {
      PrepareOptions opt;
      for (const auto& e : std::filesystem::directory_iterator("/usr/share/common-licenses"))
        if (e.is_regular_file() && !e.is_symlink()) opt.inputs.push_back(e.path().string());
      std::sort(opt.inputs.begin(), opt.inputs.end());
      opt.output = path + "/licenses.h5";
      prepare_token_file(opt);
    }
    // Every rank uses rank 0's directory (one host).
    std::vector<char> buf(path.begin(), path.end());
    buf.resize(4096, '\0');
    MPI_Bcast(buf.data(), static_cast<int>(buf.size()), MPI_CHAR, 0, MPI_COMM_WORLD);
    root_ = buf.data();
    data_path_ = root_ + "/licenses.h5";
    reference_ = std::make_unique<TrainSummary>(one_rank("reference", {}));
  }
  static void TearDownTestSuite() {
    reference_.reset();
    dir_.reset();
  }
  void SetUp() override {
    if (world_size() != 8) GTEST_SKIP() << "the layout tests run in the np=8 instance";
  }

  static Config config(const std::string& run, std::vector<std::string> set) {
    std::vector<std::string> o = {"data.path=" + data_path_, "run.out_dir=" + root_ + "/" + run,
                                  "train.steps=10",          "train.global_batch=8",
                                  "train.micro_batch=1",     "eval.every=0",
                                  "eval.sequences=2",        "log.every=1",
                                  "parallel.timeout_s=120"};
    o.insert(o.end(), set.begin(), set.end());
    return load_config(std::string(SWITCHYARD_SOURCE_DIR) + "/configs/tiny.yaml", o);
  }

  // Trains `l` on the first l.ranks ranks; returns rank 0's summary (others: empty).
  static TrainSummary run(const Layout& l) {
    TrainOptions o;
    o.gather_params = true;
    o.check_replicas = true;
    return test::train_on_first(l.ranks, config(l.name, l.set), o);
  }

  // The 1-rank run of tiny.yaml with `set` (on rank 0; the others get an empty summary).
  static TrainSummary one_rank(const std::string& name, const std::vector<std::string>& set) {
    TrainSummary s;
    if (world_rank() == 0) {
      std::ostringstream log;
      TrainOptions o;
      o.gather_params = true;
      s = train(config(name, set), log, MPI_COMM_SELF, o);
    }
    return s;
  }

  static void expect_matches_reference(const Layout& l) { expect_matches(l, *reference_); }
  // Every layout of `layouts`, each with `routing` set first (a layout's own keys win), against
  // the 1-rank run of `routing`.
  static void expect_routing_matches(const std::vector<std::string>& routing,
                                     const std::vector<Layout>& layouts);
  static void expect_matches(const Layout& l, const TrainSummary& ref) {
    const TrainSummary s = run(l);
    if (world_rank() >= l.ranks) return;
    EXPECT_TRUE(s.diverged_replicas.empty())
        << l.name << ": replicas differ on rank " << world_rank() << ", first "
        << s.diverged_replicas.front();
    if (world_rank() != 0) return;
    // Something to compare: a reference without steps or parameters passed every layout.
    ASSERT_GE(ref.step_losses.size(), 2u) << l.name;
    ASSERT_FALSE(ref.final_params.empty()) << l.name;
    ASSERT_EQ(s.step_losses.size(), ref.step_losses.size()) << l.name;
    for (size_t i = 0; i < ref.step_losses.size(); ++i)
      EXPECT_NEAR(s.step_losses[i], ref.step_losses[i], kLossTolerance * ref.step_losses[i])
          << l.name << " step " << i + 1;
    ASSERT_EQ(s.final_params.size(), ref.final_params.size());
    for (const auto& [name, want] : ref.final_params) {
      const std::vector<float>& got = s.final_params.at(name);
      ASSERT_EQ(got.size(), want.size()) << name;
      double num = 0, den = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        num += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
        den += double(want[i]) * want[i];
      }
      EXPECT_LE(std::sqrt(num / std::max(den, 1e-30)), kParamTolerance) << l.name << " " << name;
    }
  }

  static std::unique_ptr<test::TempDir> dir_;  // rank 0's
  static std::string root_;                    // its path, on every rank
  static std::string data_path_;
  static std::unique_ptr<TrainSummary> reference_;
};
std::unique_ptr<test::TempDir> Layouts::dir_;
std::string Layouts::root_;
std::string Layouts::data_path_;
std::unique_ptr<TrainSummary> Layouts::reference_;

// The layouts of issue 3, each with ZeRO-1 off and on.
const std::vector<Layout> kLayouts = {
    {"dp2", 2, {}},
    {"tp2", 2, {"parallel.tp=2"}},
    {"ep2", 2, {"parallel.ep=2"}},
    {"dp2_ep2", 4, {"parallel.ep=2"}},
    {"tp2_ep2", 4, {"parallel.tp=2", "parallel.ep=2"}},
    {"dp2_tp2_ep2", 8, {"parallel.tp=2", "parallel.ep=2"}},
    {"ep4_2nodes", 4, {"parallel.ep=4", "parallel.ranks_per_node=2"}},
    {"etp2_ep2", 4, {"parallel.etp=2", "parallel.ep=2"}},
};

TEST_F(Layouts, EveryLayoutMatchesOneRank) {
  for (const Layout& l : kLayouts) {
    expect_matches_reference(l);
    Layout z = l;
    z.name += "_zero1";
    z.set.push_back("parallel.zero1=true");
    expect_matches_reference(z);
  }
}

// The hierarchical all-to-all (issue 4) under training: both inter-node transports, and a layout
// where the expert group is strided over the nodes (etp > 1).
TEST_F(Layouts, HierarchicalAllToAllMatchesOneRank) {
  expect_matches_reference({"hier_ucx_2x4",
                            8,
                            {"parallel.ep=4", "parallel.ranks_per_node=4",
                             "parallel.a2a=hierarchical", "parallel.internode=ucx"}});
  expect_matches_reference({"hier_mpi_4x2",
                            8,
                            {"parallel.ep=4", "parallel.ranks_per_node=2",
                             "parallel.a2a=hierarchical", "parallel.internode=mpi"}});
  expect_matches_reference({"hier_ucx_etp2",
                            8,
                            {"parallel.ep=4", "parallel.etp=2", "parallel.ranks_per_node=4",
                             "parallel.a2a=hierarchical", "parallel.internode=ucx"}});
}

void Layouts::expect_routing_matches(const std::vector<std::string>& routing,
                                     const std::vector<Layout>& layouts) {
  const TrainSummary ref = one_rank(layouts.front().name + "_reference", routing);
  for (Layout l : layouts) {
    l.set.insert(l.set.begin(), routing.begin(), routing.end());
    expect_matches(l, ref);
  }
}

// Group-limited routing (SPEC section 1: 8 experts in 4 groups, each token within 2 of them)
// under expert, tensor and expert-tensor parallelism; and `route_groups: nodes` on 4 emulated
// nodes of 2 ranks (ep 8: R = 4, the same routing as the 1-rank run with route_groups 4).
TEST_F(Layouts, GroupLimitedRoutingMatchesOneRank) {
  expect_routing_matches(
      {"moe.num_experts=8", "moe.route_groups=4", "moe.route_groups_topk=2",
       "moe.bias_update_rate=1e-3"},
      {{"groups_ep2", 2, {"parallel.ep=2"}},
       {"groups_tp2_ep2", 4, {"parallel.tp=2", "parallel.ep=2"}},
       {"groups_etp2_ep2", 4, {"parallel.etp=2", "parallel.ep=2"}},
       {"groups_nodes_4x2",
        8,
        {"parallel.ep=8", "parallel.ranks_per_node=2", "parallel.a2a=hierarchical",
         "parallel.internode=mpi", "moe.route_groups=nodes"}}});
}

// `route_groups: nodes` is resolved for the layout, and the checkpoint stores the resolved number
// (SPEC 5's resolved config), so a one-rank reader of it (`sample`, `ckpt export`) routes with the
// groups training used rather than re-resolving `nodes` to its own single node. So is the default
// `parallel.a2a: auto`: the stored config holds one of SPEC 7's values.
TEST_F(Layouts, CheckpointStoresTheResolvedRouteGroups) {
  // One checkpoint directory for every rank: rank 0's temporary folder (the data file's).
  const std::string dir =
      (std::filesystem::path(data_path_).parent_path() / "groups_nodes_ckpt").string();
  const Layout l{
      "groups_nodes_ckpt",
      8,
      {"moe.num_experts=8", "moe.route_groups=nodes", "moe.route_groups_topk=2", "parallel.ep=8",
       "parallel.ranks_per_node=2", "checkpoint.every=10", "checkpoint.dir=" + dir}};
  run(l);
  const ckpt::Inspection ins = ckpt::inspect_checkpoint(MPI_COMM_WORLD, dir + "/step_00000010.h5");
  if (world_rank() != 0) return;
  const Config stored = parse_config(ins.state.config_yaml);
  EXPECT_FALSE(stored.moe.route_groups.nodes);
  EXPECT_EQ(stored.moe.route_groups.count, 4);  // 4 emulated nodes of 2 ranks
  EXPECT_EQ(stored.moe.route_groups_topk, 2);
  EXPECT_EQ(stored.parallel.a2a, A2aKind::kHierarchical);  // auto, over 4 nodes
}

// A dense parameter count that is no multiple of the expert data-parallel size (one layer of 3
// experts): under tp = 2 the expert group starts at an offset that is no multiple of edp = 2.
// Before, it was left unpadded and every rank stopped on "group of N elements not padded to 2
// ranks" before the first step.
TEST_F(Layouts, ADenseGroupOfAnyLengthMatchesOneRank) {
  expect_routing_matches({"model.n_layers=1", "moe.num_experts=3"},
                         {{"odd_dense_tp2", 2, {"parallel.tp=2"}},
                          {"odd_dense_tp2_zero1", 2, {"parallel.tp=2", "parallel.zero1=true"}}});
}

// val_loss (SPEC section 3: the mean lm_loss over the first eval.sequences validation windows) is
// the 1-rank run's when the data-parallel ranks evaluate unequal shares: 3 windows over dp 2
// (2 + 1) and over dp 4 (1 + 1 + 1 + 0), one window per micro-batch.
TEST_F(Layouts, ValidationLossMatchesOneRank) {
  const std::vector<std::string> eval = {"train.steps=2", "eval.every=2", "eval.sequences=3"};
  const TrainSummary ref = one_rank("eval_reference", eval);
  std::vector<std::string> tp2_ep2 = eval;
  tp2_ep2.insert(tp2_ep2.end(), {"parallel.tp=2", "parallel.ep=2"});
  for (const Layout& l :
       std::vector<Layout>{{"eval_dp2", 2, eval}, {"eval_dp4_tp2_ep2", 8, tp2_ep2}}) {
    const TrainSummary s = run(l);
    if (world_rank() != 0) continue;
    ASSERT_TRUE(std::isfinite(ref.final_val_loss));
    EXPECT_NEAR(s.final_val_loss, ref.final_val_loss, kLossTolerance * ref.final_val_loss)
        << l.name;
  }
}

// With capacity dropping, evaluation drops within micro-batches of train.micro_batch windows in
// file order, whatever the layout: 6 windows as {0,1} {2,3} {4,5} on one rank, on dp 2 (two
// micro-batches and one) and on dp 4 (one each, the last rank none). Each rank's share used to
// be cut first: {0,1} {2} and {3,4} {5} on dp 2, a loss 2e-5 away.
TEST_F(Layouts, ValidationLossWithCapacityMatchesOneRank) {
  const std::vector<std::string> eval = {"train.steps=2",           "eval.every=2",
                                         "eval.sequences=6",        "train.micro_batch=2",
                                         "moe.capacity_factor=0.5", "moe.num_experts=8"};
  const TrainSummary ref = one_rank("eval_capacity_reference", eval);
  std::vector<std::string> dp2 = eval, ep4 = eval;
  ep4.push_back("parallel.ep=4");
  for (const Layout& l :
       std::vector<Layout>{{"eval_capacity_dp2", 2, dp2}, {"eval_capacity_dp4_ep4", 4, ep4}}) {
    const TrainSummary s = run(l);
    if (world_rank() != 0) continue;
    ASSERT_TRUE(std::isfinite(ref.final_val_loss));
    EXPECT_NEAR(s.final_val_loss, ref.final_val_loss, 1e-6 * ref.final_val_loss) << l.name;
    ASSERT_EQ(s.step_losses.size(), ref.step_losses.size());
    for (size_t i = 0; i < ref.step_losses.size(); ++i)
      EXPECT_NEAR(s.step_losses[i], ref.step_losses[i], 1e-6 * ref.step_losses[i]) << l.name;
  }
}

// Sigmoid scores (no z-loss) with the gate scale and group-limited selection, under data,
// tensor and expert parallelism and on 2 emulated nodes.
TEST_F(Layouts, SigmoidRoutingMatchesOneRank) {
  expect_routing_matches(
      {"moe.score=sigmoid", "moe.gate_scale=2.5", "moe.num_experts=8", "moe.route_groups=4",
       "moe.route_groups_topk=2"},
      {{"sigmoid_tp2", 2, {"parallel.tp=2"}},
       {"sigmoid_dp2_ep2_zero1", 4, {"parallel.ep=2", "parallel.zero1=true"}},
       {"sigmoid_ep4_2nodes", 4, {"parallel.ep=4", "parallel.ranks_per_node=2"}}});
}

}  // namespace
}  // namespace sy
