// Expert placement at the command line (issue 17): `switchyard placement` on a run directory
// holding a hand-made co-activation whose best split is known, and exit 2 naming the problem for
// bad uses of it and for a training run given a bad placement file.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "common/damage.h"
#include "common/file_text.h"
#include "common/run_command.h"
#include "common/temp_dir.h"
#include "src/config/config.h"
#include "src/data/tokens.h"
#include "src/placement/coactivation_file.h"
#include "src/placement/placement.h"

namespace {

using sy::test::mpirun;
using sy::test::run_command;
const std::string kBin = SWITCHYARD_BIN;
const std::string kSrc = SWITCHYARD_SOURCE_DIR;

class PlacementCli : public ::testing::Test {
 protected:
  void SetUp() override {
    {
      std::ofstream t(dir_.file("t.txt"));
      for (int i = 0; i < 300; ++i) t << "pack my box with five dozen liquor jugs, " << i << "\n";
    }
    sy::PrepareOptions prep;
    prep.inputs = {dir_.file("t.txt")};
    prep.output = dir_.file("t.h5");
    sy::prepare_token_file(prep);
    // A run directory: one layer of 8 experts whose co-activation pairs experts into nodes
    // {0,3,5,6} {1,2,4,7} and, inside them, ranks {0,5} {3,6} {1,7} {2,4}.
    const sy::Config cfg = sy::load_config(
        kSrc + "/configs/tiny.yaml",
        {"data.path=" + dir_.file("t.h5"), "moe.num_experts=8", "model.n_layers=1"});
    std::filesystem::create_directories(dir_.file("run"));
    std::ofstream(dir_.file("run/config.yaml")) << sy::to_yaml(cfg);
    const std::vector<int> node = {0, 1, 1, 0, 1, 0, 0, 1}, pair = {0, 2, 3, 1, 3, 0, 1, 2};
    sy::Coactivation c;
    c.num_layers = 1;
    c.num_experts = 8;
    c.top_k = 2;
    c.tokens = 400;
    c.last_step = 10;
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j)
        c.counts.push_back(i == j                                                         ? 100
                           : node[static_cast<size_t>(i)] != node[static_cast<size_t>(j)] ? 2
                           : pair[static_cast<size_t>(i)] == pair[static_cast<size_t>(j)] ? 50
                                                                                          : 20);
    sy::write_coactivation(dir_.file("run/coactivation.h5"), c);
  }
  std::string placement(const std::string& args) {
    return kBin + " placement --run " + dir_.file("run") + " " + args;
  }
  std::string train(const std::string& extra) {
    return kBin + " train --config " + kSrc +
           "/configs/tiny.yaml --set data.path=" + dir_.file("t.h5") +
           " --set run.out_dir=" + dir_.file("train") +
           " --set train.steps=2 --set train.micro_batch=1 --set eval.every=0" +
           " --set eval.sequences=2 " + extra;
  }
  sy::test::TempDir dir_;
};

TEST_F(PlacementCli, PlacesTheKnownBestSplitAndRatesIt) {
  auto r = run_command(placement("--nodes 2 --ranks-per-node 2 --output " + dir_.file("p.yaml")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("layer 0:"), std::string::npos) << r.output;
  // d_model 32, top_k 2: fp32 rows of 34 floats (dispatch) and 32 (combine) forward, 32 and 34
  // backward.
  EXPECT_NE(r.output.find("528 bytes per inter-node row"), std::string::npos) << r.output;
  const sy::ExpertPlacement p = sy::read_placement(dir_.file("p.yaml"));
  std::set<std::set<int>> ranks;
  for (int rank = 0; rank < 4; ++rank) {
    const auto& on = p.experts_on(0, rank);
    ranks.insert(std::set<int>(on.begin(), on.end()));
  }
  EXPECT_EQ(ranks, (std::set<std::set<int>>{{0, 5}, {3, 6}, {1, 7}, {2, 4}}));
  EXPECT_EQ(p.ranks_per_node, 2);
  r = run_command(placement("--nodes 2 --evaluate " + dir_.file("p.yaml")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("rows/token"), std::string::npos) << r.output;
}

// The predicted inter-node bytes count every assignment; a run with a capacity drops some, and
// the prediction is said to be before those drops (QA: 1.35-1.4x a capacity-1.0 run's measured
// internode_bytes, unsaid). A dropless run's prediction carries no such note.
TEST_F(PlacementCli, APredictionForARunThatDropsTokensSaysItIsBeforeTheDrops) {
  auto r = run_command(placement("--nodes 2 --ranks-per-node 2 --output " + dir_.file("p.yaml")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("before capacity drops"), std::string::npos) << r.output;
  const sy::Config cfg = sy::load_config(kSrc + "/configs/tiny.yaml",
                                         {"data.path=" + dir_.file("t.h5"), "moe.num_experts=8",
                                          "model.n_layers=1", "moe.capacity_factor=1.25"});
  std::ofstream(dir_.file("run/config.yaml")) << sy::to_yaml(cfg);
  for (const std::string& args :
       {"--output " + dir_.file("q.yaml"), "--evaluate " + dir_.file("p.yaml")}) {
    r = run_command(placement("--nodes 2 --ranks-per-node 2 " + args));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("before capacity drops any; the run drops rows past "
                            "moe.capacity_factor 1.25"),
              std::string::npos)
        << r.output;
  }
}

// A run directory of an older switchyard whose config.yaml holds a byte that is not UTF-8 (a
// Latin-1 run.name, written before configs were checked for such bytes): placement refused it
// ("byte 0xe9, not UTF-8", exit 2) while sample and ckpt info read the run's checkpoints. It is
// read as the checkpoints' stored config is.
TEST_F(PlacementCli, AnOlderRunsConfigWithAByteThatIsNotUtf8IsRead) {
  std::string config = sy::test::read_file(dir_.file("run/config.yaml"));
  const size_t at = config.find("name: ");
  ASSERT_NE(at, std::string::npos) << config;
  config.insert(at + 6, "caf\xe9-");
  std::ofstream(dir_.file("run/config.yaml"), std::ios::binary) << config;
  const auto r =
      run_command(placement("--nodes 2 --ranks-per-node 2 --output " + dir_.file("p.yaml")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// One expert per EP rank and a hot one: no placement gets the max rank load under its load, and
// the output says so (the bound the nodes were balanced to), not that no swap was found.
TEST_F(PlacementCli, AHotExpertOverTheImbalanceIsNamedAsTheReason) {
  sy::Coactivation c = sy::read_coactivation(dir_.file("run/coactivation.h5"));
  c.counts[0] = 800;  // expert 0: 800 of 1500, the mean of 8 ranks 187.5
  sy::write_coactivation(dir_.file("run/coactivation.h5"), c);
  const auto r =
      run_command(placement("--nodes 4 --ranks-per-node 2 --output " + dir_.file("p.yaml")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("max rank load 4.27x -> 4.27x (over --imbalance: the busiest expert "
                          "alone is 4.27x the mean rank load)"),
            std::string::npos)
      << r.output;
}

TEST_F(PlacementCli, BadUsesExitTwoNamingTheProblem) {
  std::ofstream(dir_.file("bad.yaml")) << "format: switchyard-expert-placement\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {kBin + " placement --run " + dir_.file("absent") + " --nodes 2 --output x.yaml", "absent"},
      {placement("--nodes 3 --ranks-per-node 1 --output x.yaml"), "do not divide"},
      {placement("--nodes 2 --ranks-per-node 2"), "--output"},
      {placement("--nodes 2 --evaluate " + dir_.file("bad.yaml")), "bad.yaml"},
      {placement("--nodes 2 --ranks-per-node 2 --route-groups 3 --output x.yaml"), "route_groups"},
      // An empty value (an unset variable) was the run's own moe.route_groups, unsaid.
      {placement("--nodes 2 --ranks-per-node 2 --route-groups '' --output x.yaml"),
       "--route-groups: give an integer or 'nodes', not an empty value"},
      {placement("--nodes 2 --ranks-per-node 2 --output " + dir_.path().string()),
       "is a directory"},
      // The run's own files (the placement YAML was written over them, exit 0).
      {placement("--nodes 2 --ranks-per-node 2 --output " + dir_.file("run/coactivation.h5")),
       "is the input file"},
      {placement("--nodes 2 --ranks-per-node 2 --output " + dir_.file("run/./config.yaml")),
       "is the input file"},
  };
  for (const auto& [cmd, expect] : cases) {
    const auto r = run_command(cmd);
    EXPECT_EQ(r.exit_code, 2) << cmd << "\n" << r.output;
    EXPECT_NE(r.output.find(expect), std::string::npos) << cmd << "\n" << r.output;
    // Refused before the work: no table first (it printed a whole one before these two).
    EXPECT_EQ(r.output.find("rows/token"), std::string::npos) << cmd << "\n" << r.output;
  }
  EXPECT_NO_THROW(sy::read_coactivation(dir_.file("run/coactivation.h5")));
  EXPECT_NO_THROW(sy::load_config(dir_.file("run/config.yaml")));
}

// More EP ranks than experts (each rank holds one at least), whatever the product's size: it was
// taken in int, so 65536 x 65536 wrapped to 0 and crashed (SIGFPE, exit 136), 46341 x 46341
// printed a negative rank count and 2^31-1 squared reached METIS (exit 1). Exit 2 naming both
// options, before the table.
TEST_F(PlacementCli, MoreEpRanksThanExpertsAreRefusedWithoutOverflow) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"65536", "4294967296"},
      {"46341", "2147488281"},
      {"2147483647", "4611686014132420609"},
      {"4", "16"},
  };
  for (const auto& [n, ranks] : cases) {
    const std::string cmd =
        placement("--nodes " + n + " --ranks-per-node " + n + " --output " + dir_.file("p.yaml"));
    const auto r = run_command(cmd);
    EXPECT_EQ(r.exit_code, 2) << cmd << "\n" << r.output;
    EXPECT_NE(r.output.find("--nodes=" + n + " x --ranks-per-node=" + n + " = " + ranks +
                            " EP ranks are more than the 8 experts"),
              std::string::npos)
        << cmd << "\n"
        << r.output;
    EXPECT_EQ(r.output.find("rows/token"), std::string::npos) << cmd << "\n" << r.output;
    EXPECT_FALSE(std::filesystem::exists(dir_.file("p.yaml")));
  }
}

// An --output in a directory that does not exist was found after the work: the table, then
// "create '.../x.yaml.tmp' failed" (the writer's internal name). Refused first, as `data
// prepare` refuses it (files::check_output_file), naming the directory.
TEST_F(PlacementCli, AnOutputInAMissingDirectoryIsRefusedBeforeTheWork) {
  const std::string out = dir_.file("nodir/x.yaml");
  const auto r = run_command(placement("--nodes 2 --ranks-per-node 2 --output " + out));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("'" + dir_.file("nodir") + "'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("does not exist"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(".tmp"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("rows/token"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir_.file("nodir")));
}

// A co-activation file whose root object header fails its checksum: exit 2 naming the file, and
// nothing of HDF5's own. HDF5 1.10.8 leaks the header it could not load (HDFGroup/hdf5#3790) and
// said "HDF5: infinite loop closing library" at exit while its error printing was on (QA).
TEST_F(PlacementCli, ADamagedCoactivationFileIsNamedAndHdf5PrintsNothing) {
  sy::test::damage_object_header(dir_.file("run/coactivation.h5"), "/", 10);
  const auto r =
      run_command(placement("--nodes 2 --ranks-per-node 2 --output " + dir_.file("p.yaml")));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(dir_.file("run/coactivation.h5")), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("HDF5"), std::string::npos) << r.output;
}

// A placement file that cannot be written for want of room (here the file size limit; a full
// disk alike) is exit 1, as every output's: it was 2, as for a bad path. Nothing is left.
TEST_F(PlacementCli, AnOutputOutOfRoomExitsOne) {
  const std::string out = dir_.file("p.yaml");
  const auto r = run_command("export PMIX_MCA_gds=hash; ulimit -f 0; " +
                             placement("--nodes 2 --ranks-per-node 2 --output " + out));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--output '" + out + "'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("File too large"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_FALSE(std::filesystem::exists(out + ".tmp"));
}

TEST_F(PlacementCli, TrainingRefusesABadPlacementNamingTheProblem) {
  const std::string head = "format: switchyard-expert-placement\nversion: 1\n";
  struct Case {
    std::string label, text, expect;
  };
  const std::vector<Case> cases = {
      {"missing", head + "num_experts: 4\nep: 1\nlayers:\n  - [[0, 1, 2]]\n  - [[0, 1, 2, 3]]\n",
       "expert 3 is missing"},
      {"repeated",
       head + "num_experts: 4\nep: 1\nlayers:\n  - [[0, 1, 2, 2]]\n  - [[0, 1, 2, 3]]\n",
       "expert 2 is repeated"},
      {"wrong_e", head + "num_experts: 2\nep: 1\nlayers:\n  - [[0, 1]]\n  - [[0, 1]]\n",
       "moe.num_experts = 4"},
      {"wrong_layers", head + "num_experts: 4\nep: 1\nlayers:\n  - [[0, 1, 2, 3]]\n",
       "model.n_layers = 2"},
      {"wrong_ep",
       head + "num_experts: 4\nep: 2\nlayers:\n  - [[0, 1], [2, 3]]\n  - [[0, 1], [2, 3]]\n",
       "parallel.ep = 1"},
  };
  for (const auto& c : cases) {
    const std::string file = dir_.file(c.label + ".yaml");
    std::ofstream(file) << c.text;
    const auto r = run_command(train("--set parallel.expert_placement=" + file));
    EXPECT_EQ(r.exit_code, 2) << c.label << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.label << "\n" << r.output;
    EXPECT_NE(r.output.find("parallel.expert_placement"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("step "), std::string::npos) << c.label << ": no work before it";
  }
  const auto r = run_command(train("--set parallel.expert_placement=" + dir_.path().string()));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("is a directory, expected a file written by `switchyard placement`"),
            std::string::npos)
      << r.output;
}

// With route_groups on, 2 emulated nodes: a placement that moves experts of group 0 to the other
// node (and some of group 1 back) would let a token reach more nodes than route_groups_topk.
// --evaluate of a placement that training with the routing groups asked for would refuse (a group
// spread over both nodes): rated as any other, with that said (it was rated, unsaid; QA).
TEST_F(PlacementCli, RatingAPlacementThatSplitsARouteGroupSaysTrainingRefusesIt) {
  const std::string file = dir_.file("split.yaml");
  sy::write_placement(file, sy::ExpertPlacement::from_ranks({{0, 2, 0, 2, 1, 3, 1, 3}}, 4, "t"));
  auto r =
      run_command(placement("--nodes 2 --route-groups 2 --ranks-per-node 2 --evaluate " + file));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("note: training with 2 routing groups refuses this placement: "
                          "parallel.expert_placement=" +
                          file + ": layer 0 spreads routing group 0"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("rows/token"), std::string::npos) << r.output;
  r = run_command(placement("--nodes 2 --ranks-per-node 2 --evaluate " + file));  // no groups
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("refuses"), std::string::npos) << r.output;
}

TEST_F(PlacementCli, TrainingRefusesAPlacementThatSplitsARouteGroup) {
  const std::string file = dir_.file("split.yaml");
  sy::write_placement(file, sy::ExpertPlacement::from_ranks({{0, 1, 0, 1}, {0, 0, 1, 1}}, 2, "t"));
  const std::string set =
      "--set parallel.ep=2 --set parallel.ranks_per_node=1 "
      "--set moe.route_groups=2 --set parallel.expert_placement=" +
      file;
  const auto r = run_command(mpirun(2) + train(set));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(
      r.output.find("parallel.expert_placement=" + file + ": layer 0 spreads routing group 0"),
      std::string::npos)
      << r.output;
  // The same placement is fine without group-limited routing.
  const auto ok =
      run_command(mpirun(2) + train("--set parallel.ep=2 --set parallel.ranks_per_node=1 "
                                    "--set parallel.expert_placement=" +
                                    file));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_EQ(ok.output.find("was made for"), std::string::npos) << ok.output;
  // Made for 2 EP ranks per node, run on 1 per node: it trains, and the log says that its
  // node grouping is not this run's (it said nothing; QA).
  sy::ExpertPlacement two = sy::ExpertPlacement::from_ranks({{0, 1, 0, 1}, {0, 0, 1, 1}}, 2, "t");
  two.ranks_per_node = 2;
  sy::write_placement(dir_.file("two.yaml"), two);
  const auto other =
      run_command(mpirun(2) + train("--set parallel.ep=2 --set parallel.ranks_per_node=1 "
                                    "--set parallel.expert_placement=" +
                                    dir_.file("two.yaml")));
  EXPECT_EQ(other.exit_code, 0) << other.output;
  EXPECT_NE(other.output.find("two.yaml was made for 2 EP ranks per node, this run has 1"),
            std::string::npos)
      << other.output;
}

}  // namespace

namespace {

// Two ranks given different placement files (a copy that differs between nodes: the same-config
// check leaves paths aside) routed by different tables, exit 0. Rank 0's table is compared on
// every rank before the model is built: exit 2, naming the key. The same file on both trains.
TEST_F(PlacementCli, RanksWithDifferentPlacementFilesAreRefused) {
  const std::string head =
      "format: switchyard-expert-placement\nversion: 1\nnum_experts: 4\nep: 2\nlayers:\n";
  std::ofstream(dir_.file("a.yaml")) << head << "  - [[0, 1], [2, 3]]\n  - [[0, 1], [2, 3]]\n";
  std::ofstream(dir_.file("b.yaml")) << head << "  - [[0, 2], [1, 3]]\n  - [[0, 1], [2, 3]]\n";
  auto rank = [&](const std::string& file, const std::string& out) {
    return "-np 1 " + train("--set parallel.ep=2 --set run.out_dir=" + dir_.file(out) +
                            " --set parallel.expert_placement=" + dir_.file(file));
  };
  // mpirun's MPMD form: one rank per program line, each with its own --set.
  const std::string launch = sy::test::mpirun(2).substr(0, sy::test::mpirun(2).find("-np "));
  auto r = run_command(launch + rank("a.yaml", "ab") + " : " + rank("b.yaml", "ab"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("parallel.expert_placement: this rank's placement ('" +
                          dir_.file("b.yaml") + "') is not rank 0's (another table)"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("step "), std::string::npos) << "no step before it";
  r = run_command(launch + rank("a.yaml", "aa") + " : " + rank("a.yaml", "aa"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace
