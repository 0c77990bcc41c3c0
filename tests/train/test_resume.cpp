// Resuming from checkpoints (issue 5, "What must be shown"):
// - bitwise resume: a run SIGKILLed after its step-10 checkpoint and resumed with --resume auto
//   logs exactly the uninterrupted run's metrics for steps 11-20 and writes exactly its final
//   checkpoint (every tensor, moments included);
// - reshard: a checkpoint written at (dp=2, ep=2) resumed at (tp=2, ep=1) and on one rank gives
//   the uninterrupted run's losses within reduction-order tolerance;
// - a config whose model shape differs from the checkpoint's is refused naming the key; a
//   compatible change is accepted and reported.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "comm/mpi.h"
#include "common/ckpt_tensors.h"
#include "common/file_text.h"
#include "common/mpi_util.h"
#include "common/other_user.h"
#include "common/run_command.h"
#include "common/temp_dir.h"
#include "common/train_util.h"
#include "src/ckpt/checkpoint.h"
#include "src/config/config.h"
#include "src/core/h5.h"
#include "src/core/h5_attr.h"
#include "src/data/tokens.h"
#include "src/model/params.h"
#include "src/train/trainer.h"
#include "train/resume_fixture.h"

namespace sy {
namespace {

using test::all_tensors;
using test::read_file;
using test::world_rank;
using test::world_size;

namespace fs = std::filesystem;
using test::Resume;
using test::run_as_user;

// The metrics lines by step (train lines; eval lines keyed by -step), timing keys removed.
std::map<int64_t, std::string> metrics_by_step(const std::string& run_dir) {
  std::map<int64_t, std::string> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    for (const char* timing : {"tokens_per_s", "step_ms", "a2a_ms", "gflops", "peak_mem_bytes"})
      j.erase(timing);
    const int64_t step = j["step"].get<int64_t>();
    out[j.contains("val_loss") ? -step : step] = j.dump();
  }
  return out;
}

}  // namespace

void test::Resume::expect_bitwise_resume(const std::string& extra, const std::string& resume_env) {
  auto cmd = [&](const std::string& run, const std::string& more = "") {
    return train_cmd(run, extra + " " + more);
  };
  auto r = run_as_user(cmd("straight"));
  ASSERT_EQ(r.exit_code, 0) << r.output;

  // The interrupted run hangs at the start of step 12 (after the step-10 checkpoint and a
  // step-11 line that the resumed run must redo), and is SIGKILLed there.
  const std::string latest = dir_.file("killed") + "/checkpoints/latest";
  r = kill_when(cmd("killed"), 12, latest, "step_00000010");
  EXPECT_EQ(r.exit_code, 137) << "SIGKILLed: " << r.output;
  ASSERT_TRUE(fs::exists(dir_.file("killed") + "/checkpoints/step_00000010.h5"));
  ASSERT_FALSE(fs::exists(dir_.file("killed") + "/checkpoints/step_00000020.h5"));

  r = run_as_user(resume_env + " " + cmd("killed", "--resume auto"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("step_00000010.h5 (step 10)"), std::string::npos) << r.output;
  // What the kill cost, said: the step-11 line the killed run wrote is redone.
  EXPECT_NE(r.output.find("metrics.jsonl shows the earlier run at step 11: step 11 after the "
                          "checkpoint is trained again"),
            std::string::npos)
      << r.output;

  const auto want = metrics_by_step(dir_.file("straight"));
  const auto got = metrics_by_step(dir_.file("killed"));
  EXPECT_EQ(got.size(), want.size()) << "no duplicated or missing lines";
  for (int64_t step = 11; step <= 20; ++step) EXPECT_EQ(got.at(step), want.at(step)) << step;
  EXPECT_EQ(got.at(-15), want.at(-15));
  EXPECT_EQ(got.at(-20), want.at(-20));

  const auto a = all_tensors(dir_.file("straight") + "/checkpoints/step_00000020.h5");
  const auto b = all_tensors(dir_.file("killed") + "/checkpoints/step_00000020.h5");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, values] : a) EXPECT_EQ(b.at(name), values) << name;
}

namespace {

TEST_F(Resume, KilledAfterCheckpointResumesBitwise) {
  expect_bitwise_resume("");
}

// The runs above use one OpenMP thread; a run requeued onto a node with other cores resumes
// with another thread count, and must still continue bit for bit (3: the products' parts do not
// divide evenly among the threads). d_model 64 and micro-batches of 8 take most products well
// past gemm()'s split threshold (at tiny.yaml's sizes only the head reaches it, exactly).
TEST_F(Resume, ResumedWithAnotherThreadCountContinuesBitwise) {
  expect_bitwise_resume("--set model.d_model=64 --set train.micro_batch=8", "OMP_NUM_THREADS=3");
}

// The router's variants live in the config the checkpoint carries: sigmoid scores, the gate
// scale, group-limited selection and the bias updates resume bit for bit too.
TEST_F(Resume, RouterVariantsResumeBitwise) {
  expect_bitwise_resume(
      "--set moe.score=sigmoid --set moe.gate_scale=2.5 --set moe.num_experts=8 "
      "--set moe.route_groups=4 --set moe.route_groups_topk=2 --set moe.bias_update_rate=1e-3");
}

TEST_F(Resume, ModelShapeChangeIsRefusedNamingTheKeyOtherChangesAreReported) {
  auto r = run_as_user(train_cmd("run", "--set train.steps=10"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_as_user(train_cmd("run", "--resume auto --set moe.num_experts=8"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("moe.num_experts"), std::string::npos) << r.output;
  r = run_as_user(train_cmd("run", "--resume auto --set train.steps=12 --set log.every=2"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("train.steps: 10 -> 12"), std::string::npos) << r.output;
  // The schedule's length moved: tiny.yaml's cosine (lr 3e-3, min 3e-4, warmup 5) at step 11
  // of 12 is 3e-4 + 1.35e-3 * (1 + cos(5 pi / 6)) = 4.81e-4; the 10-step schedule had ended at
  // min_lr.
  EXPECT_NE(r.output.find("note: the learning-rate schedule changed: step 11 trains at lr "
                          "0.000481 where the checkpoint's schedule had 0.0003"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("step     12/12"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("run.seed changed"), std::string::npos) << r.output;
  // Another run.seed draws the rest of the epoch's order anew: said, with what it costs.
  r = run_as_user(train_cmd("run", "--resume auto --set train.steps=13 --set run.seed=7"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("note: run.seed changed: the data order is drawn anew from step 13, so "
                          "some windows of this epoch are trained again"),
            std::string::npos)
      << r.output;
  r = run_as_user(train_cmd("run", "--resume " + dir_.file("nope.h5")));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("nope.h5"), std::string::npos) << r.output;
  // Into a new run directory: nothing is made (it was, with checkpoints/ and lock files).
  r = run_as_user(train_cmd("fresh", "--resume " + dir_.file("nope.h5")));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--resume '" + dir_.file("nope.h5") + "': no such checkpoint file"),
            std::string::npos)
      << r.output;
  EXPECT_FALSE(fs::exists(dir_.file("fresh")));
  // A --resume file that is there but is no checkpoint of this model (the token file, a
  // directory, a checkpoint of another d_model) is refused after the run's directories were
  // claimed: they go again, lock files and all (QA: runs/<name>/, its checkpoints/ and two lock
  // files were left). A directory that was there before stays, as it was.
  const std::string ten = dir_.file("run") + "/checkpoints/step_00000010.h5";
  ASSERT_TRUE(fs::exists(ten));
  for (const std::string& bad :
       {dir_.file("t.h5"), dir_.file("run"), ten + " --set model.d_model=64"}) {
    r = run_as_user(train_cmd("fresh", "--resume " + bad));
    EXPECT_EQ(r.exit_code, 2) << bad << "\n" << r.output;
    EXPECT_FALSE(fs::exists(dir_.file("fresh"))) << bad << "\n" << r.output;
  }
  fs::create_directories(dir_.file("there"));
  r = run_as_user(train_cmd("there", "--resume " + dir_.file("t.h5")));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(fs::is_directory(dir_.file("there")));
  EXPECT_TRUE(fs::is_empty(dir_.file("there")));
  // checkpoint.dir a parent of run.out_dir (its lock file was left: the deeper one goes first),
  // and a run.out_dir through "..", whose directories are made one by one (a/ and a/b/ were
  // left: the path was taken apart lexically, a/c is what the file system made).
  r = run_as_user(train_cmd(
      "there/o", "--set checkpoint.dir=" + dir_.file("there") + " --resume " + dir_.file("t.h5")));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(fs::is_empty(dir_.file("there"))) << r.output;
  r = run_as_user(train_cmd("a/b/../c", "--resume " + dir_.file("t.h5")));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_FALSE(fs::exists(dir_.file("a"))) << r.output;
  // Both made here, checkpoint.dir above run.out_dir: its parents, made by run.out_dir's claim,
  // go too (review: p/a/b was left).
  r = run_as_user(train_cmd(
      "p/a/b/o", "--set checkpoint.dir=" + dir_.file("p/a/b") + " --resume " + dir_.file("t.h5")));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_FALSE(fs::exists(dir_.file("p"))) << r.output;
  // A run that did write keeps its directories and their (emptied) lock files.
  EXPECT_TRUE(fs::exists(dir_.file("run") + "/.switchyard.lock"));
  EXPECT_TRUE(fs::exists(dir_.file("run") + "/checkpoints/.switchyard.lock"));
}

// A resume with another train.global_batch continues the batch order after the sequences the
// checkpoint consumed, and counts tokens per step as they were trained: 10 steps of 8 sequences
// and 2 of 16 are 112 sequences, 3584 tokens of seq_len 32. Before, both were recomputed from
// the new batch: steps 10 and 11 read sequences 160..191, skipping 80..159, and ckpt info said
// 6144 tokens. The order itself: Loader tests.
TEST_F(Resume, AnotherGlobalBatchContinuesTheDataAndTheTokenCount) {
  auto r = run_as_user(train_cmd("run", "--set train.steps=10"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run_as_user(
      train_cmd("run", "--resume auto --set train.steps=12 --set train.global_batch=16"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("train.global_batch: 8 -> 16"), std::string::npos) << r.output;
  r = run_as_user(std::string(SWITCHYARD_BIN) + " ckpt info --no-config " + dir_.file("run") +
                  "/checkpoints/step_00000012.h5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("step         12 (tokens seen 3584)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("next step 12, sequences consumed 112"), std::string::npos) << r.output;
}

// A newest checkpoint this user may not read is not damaged: --resume auto stops with exit 2
// naming it. It used to be skipped like a damaged one: the run resumed from the older checkpoint
// and, with checkpoint.keep 1, removed the good newer one. Needs root to hand the run to
// another user (setpriv; CI runs as root).
TEST_F(Resume, AnUnreadableNewestCheckpointStopsAutoResumeInsteadOfBeingSkipped) {
  const std::string config = std::string(SWITCHYARD_SOURCE_DIR) + "/configs/tiny.yaml";
  const auto nobody = test::as_nobody(dir_.path(), SWITCHYARD_BIN, config);
  if (!nobody) GTEST_SKIP() << "needs root and setpriv to run as another user";
  auto r = run_as_user(train_cmd("run", "--set train.steps=20"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string newest = dir_.file("run") + "/checkpoints/step_00000020.h5";
  r = run_as_user("chown -R 65534:65534 " + dir_.path().string() + " && chown 0:0 " + newest +
                  " && chmod 000 " + newest);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // As nobody, with the copies of the binary and the config it can reach.
  std::string cmd = train_cmd("run", "--set train.steps=30 --set checkpoint.keep=1 --resume auto");
  cmd.replace(cmd.find(SWITCHYARD_BIN), std::string(SWITCHYARD_BIN).size(), nobody->bin);
  cmd.replace(cmd.find(config), config.size(), nobody->config);
  r = run_as_user(nobody->prefix + cmd);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("checkpoint " + newest +
                          " cannot be read: Permission denied; not "
                          "skipped"),
            std::string::npos)
      << r.output;
  EXPECT_TRUE(fs::exists(newest));
  EXPECT_TRUE(fs::exists(dir_.file("run") + "/checkpoints/step_00000010.h5"));
  EXPECT_FALSE(fs::exists(dir_.file("run") + "/checkpoints/step_00000030.h5"));
}

// A metrics.jsonl the resumed run may write but not read (mode 0200, or a read error of a failing
// network disk) is refused, exit 2 naming it, and left as it was. It used to read as empty: the
// resume replaced it with the new steps' lines, the earlier history gone, and exit 0.
TEST_F(Resume, AMetricsFileThatCannotBeReadIsRefusedNotEmptied) {
  const std::string config = std::string(SWITCHYARD_SOURCE_DIR) + "/configs/tiny.yaml";
  const auto nobody = test::as_nobody(dir_.path(), SWITCHYARD_BIN, config);
  if (!nobody) GTEST_SKIP() << "needs root and setpriv to run as another user";
  auto r = run_as_user(train_cmd("run", "--set train.steps=20"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string metrics = dir_.file("run") + "/metrics.jsonl";
  const std::string before = read_file(metrics);
  const std::string config_before = read_file(dir_.file("run") + "/config.yaml");
  r = run_as_user("chown -R 65534:65534 " + dir_.path().string() + " && chmod 200 " + metrics);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::string cmd = train_cmd("run", "--set train.steps=30 --resume auto");
  cmd.replace(cmd.find(SWITCHYARD_BIN), std::string(SWITCHYARD_BIN).size(), nobody->bin);
  cmd.replace(cmd.find(config), config.size(), nobody->config);
  r = run_as_user(nobody->prefix + cmd);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("cannot read metrics file '" + metrics + "'"), std::string::npos)
      << r.output;
  EXPECT_EQ(read_file(metrics), before);
  EXPECT_EQ(fs::status(metrics).permissions() & fs::perms::all, fs::perms::owner_write);
  // Nor the run's config.yaml: the refused run's (train.steps 30) replaced it.
  EXPECT_EQ(read_file(dir_.file("run") + "/config.yaml"), config_before);
}

// --resume auto with a checkpoint.dir that holds nothing starts at step 0, as a first start must.
// But where run.out_dir's earlier run kept its checkpoints in another directory (a user who
// pointed checkpoint.dir at a new disk without moving them) it is refused, naming that
// directory and the --resume that continues, before anything is moved or written; that
// --resume then continues into the new directory. A run that died before its first checkpoint
// starts over with a note.
TEST_F(Resume, ResumeAutoRefusesWhenTheEarlierCheckpointsAreElsewhere) {
  auto r = run_as_user(train_cmd("run", "--set train.steps=10 --resume auto"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("starting at step 0"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("note: "), std::string::npos) << "a first start: " << r.output;
  const std::string metrics = dir_.file("run") + "/metrics.jsonl";
  const auto before = metrics_by_step(dir_.file("run"));
  const std::string elsewhere = dir_.file("elsewhere");
  const std::string old_ckpt = dir_.file("run") + "/checkpoints/step_00000010.h5";

  r = run_as_user(
      train_cmd("run", "--set train.steps=12 --resume auto --set checkpoint.dir=" + elsewhere));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("kept its checkpoints in '" + dir_.file("run") + "/checkpoints'"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("--resume " + old_ckpt), std::string::npos) << r.output;
  EXPECT_EQ(metrics_by_step(dir_.file("run")), before) << "metrics.jsonl changed";
  EXPECT_FALSE(fs::exists(metrics + ".prev"));
  EXPECT_FALSE(fs::exists(elsewhere + "/latest"));

  r = run_as_user(train_cmd(
      "run", "--set train.steps=12 --resume " + old_ckpt + " --set checkpoint.dir=" + elsewhere));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(elsewhere + "/step_00000012.h5"));
  EXPECT_EQ(metrics_by_step(dir_.file("run")).count(12), 1u);

  // Died before its first checkpoint (here: its checkpoints removed): a note, then step 0.
  fs::remove_all(elsewhere);
  fs::remove_all(dir_.file("run") + "/checkpoints");
  r = run_as_user(train_cmd("run", "--set train.steps=10 --resume auto"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("metrics.jsonl shows this run at step 12 but checkpoint.dir"),
            std::string::npos)
      << r.output;
  EXPECT_TRUE(fs::exists(metrics + ".prev"));
}

// Rank 0 writes licenses.h5 into its `dir`; every rank gets that directory's path (one host).
std::string licences_of_rank0(const test::TempDir& dir) {
  std::vector<char> buf(4096, '\0');
  if (world_rank() == 0) {
    PrepareOptions opt;
    for (const auto& e : fs::directory_iterator("/usr/share/common-licenses"))
      if (e.is_regular_file() && !e.is_symlink()) opt.inputs.push_back(e.path().string());
    opt.output = dir.file("licenses.h5");
    prepare_token_file(opt);
    const std::string root = dir.path().string();
    std::copy(root.begin(), root.end(), buf.begin());
  }
  MPI_Bcast(buf.data(), static_cast<int>(buf.size()), MPI_CHAR, 0, MPI_COMM_WORLD);
  return buf.data();
}

// In the np=8 instance: the run and its checkpoints on 2 ranks (dp=2, ep=2), then resumes from
// its step-10 checkpoint on 2 ranks at (tp=2), on 1 rank, and on 2 ranks with ZeRO-1 (dp=2).
class Reshard : public ::testing::Test {
 protected:
  void SetUp() override {
    if (world_size() != 8) GTEST_SKIP() << "the reshard test runs in the np=8 instance";
  }
};

TEST_F(Reshard, CheckpointOfOneLayoutResumesUnderOthers) {
  const int rank = world_rank();
  auto dir = std::make_unique<test::TempDir>();
  const std::string root = licences_of_rank0(*dir);
  auto config = [&](const std::string& run, std::vector<std::string> set) {
    std::vector<std::string> o = {"data.path=" + root + "/licenses.h5",
                                  "run.out_dir=" + root + "/" + run,
                                  "checkpoint.dir=" + root + "/ckpt",
                                  "train.steps=20",
                                  "train.micro_batch=1",
                                  "checkpoint.every=10",
                                  "checkpoint.keep=5",
                                  "eval.every=0",
                                  "eval.sequences=2"};
    o.insert(o.end(), set.begin(), set.end());
    return load_config(std::string(SWITCHYARD_SOURCE_DIR) + "/configs/tiny.yaml", o);
  };
  auto run_on = [&](int ranks, const Config& cfg, const std::string& resume) {
    TrainOptions o;
    o.resume = resume;
    return test::train_on_first(ranks, cfg, o);
  };
  const TrainSummary straight = run_on(2, config("straight", {"parallel.ep=2"}), "");
  const std::string ckpt10 = root + "/ckpt/step_00000010.h5";
  // SPEC 5's tokens_seen: 10 steps of global_batch 8 sequences of seq_len 32 tokens.
  EXPECT_EQ(ckpt::verify_checkpoint(MPI_COMM_WORLD, ckpt10).tokens_seen, 10 * 8 * 32);
  // ZeRO-1 resumes with each rank's moments chunk taken from the checkpoint's full moments.
  for (const auto& [ranks, set] : {std::pair{2, std::vector<std::string>{"parallel.tp=2"}},
                                   std::pair{1, std::vector<std::string>{}},
                                   std::pair{2, std::vector<std::string>{"parallel.zero1=true"}}}) {
    const TrainSummary resumed = run_on(ranks, config("resumed", set), ckpt10);
    if (rank != 0) continue;
    EXPECT_EQ(resumed.first_step, 10);
    ASSERT_EQ(resumed.step_losses.size(), 10u);
    for (size_t i = 0; i < 10; ++i)
      EXPECT_NEAR(resumed.step_losses[i], straight.step_losses[10 + i],
                  1e-5 * straight.step_losses[10 + i])
          << ranks << " ranks, step " << 11 + i;
  }
  MPI_Barrier(MPI_COMM_WORLD);  // rank 0's directory goes last
}

// ZeRO-1 writes each rank's chunk of the moments where it lies (no gathered copy), and reads it
// back the same way. ZeRO-1 on or off computes the same bits, so the step-10 checkpoints of the
// same layout with it on and off must be the same tensors bit for bit -- moments included --
// under layouts whose chunks cut tensors mid-row: a tp-replicated tensor written by one tp rank,
// tp-sharded wqkv (blocks with gaps), experts over edp. The ZeRO-1 file, resumed with ZeRO-1 on
// another layout, continues as the uninterrupted run. (Chunks across several parts of a tensor
// and several runs per part, as an expert placement and many buckets give: test_training_refs.)
TEST_F(Reshard, Zero1WritesTheSameCheckpointWithoutGatheringTheMoments) {
  const int rank = world_rank();
  auto dir = std::make_unique<test::TempDir>();
  const std::string root = licences_of_rank0(*dir);
  auto config = [&](const std::string& run, int steps, std::vector<std::string> set) {
    std::vector<std::string> o = {"data.path=" + root + "/licenses.h5",
                                  "run.out_dir=" + root + "/" + run,
                                  "checkpoint.dir=" + root + "/" + run + "/ckpt",
                                  "train.steps=" + std::to_string(steps),
                                  "train.micro_batch=1",
                                  "checkpoint.every=10",
                                  "eval.every=0",
                                  "eval.sequences=2",
                                  "moe.num_experts=6",
                                  "parallel.timeout_s=120"};
    o.insert(o.end(), set.begin(), set.end());
    return load_config(std::string(SWITCHYARD_SOURCE_DIR) + "/configs/tiny.yaml", o);
  };
  auto run_on = [&](int ranks, const Config& cfg, const std::string& resume = "") {
    TrainOptions o;
    o.resume = resume;
    return test::train_on_first(ranks, cfg, o);
  };
  // (dp=4, tp=2, ep=2) on 8 ranks: edp 4 over 3 experts per EP rank; (dp=2, tp=2, ep=2) on 4;
  // (dp=4, ep=2, etp=2) on 4.
  const std::vector<std::pair<int, std::vector<std::string>>> layouts = {
      {8, {"parallel.tp=2", "parallel.ep=2"}},
      {4, {"parallel.tp=2", "parallel.ep=2"}},
      {4, {"parallel.ep=2", "parallel.etp=2"}}};
  // l0 trains 20 steps (the run its step-10 checkpoint resumes into below), the others 10.
  TrainSummary straight;
  int n = 0;
  for (const auto& [ranks, set] : layouts) {
    const int steps = n == 0 ? 20 : 10;
    const std::string name = std::string("l").append(std::to_string(n++));
    std::vector<std::string> zero1 = set;
    zero1.push_back("parallel.zero1=true");
    const TrainSummary run = run_on(ranks, config(name + "_plain", steps, set));
    if (steps == 20) straight = run;
    run_on(ranks, config(name + "_zero1", steps, zero1));
    if (rank == 0) {
      const auto plain = test::all_tensors(root + "/" + name + "_plain/ckpt/step_00000010.h5");
      const auto sharded = test::all_tensors(root + "/" + name + "_zero1/ckpt/step_00000010.h5");
      ASSERT_EQ(plain.size(), sharded.size());
      for (const auto& [tensor, want] : plain) {
        const std::vector<float>& got = sharded.at(tensor);
        ASSERT_EQ(got.size(), want.size()) << tensor;
        EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
            << name << " (" << ranks << " ranks): " << tensor << " differs with ZeRO-1";
      }
      EXPECT_GT(plain.count("m:model/layers/0/attn/wqkv"), 0u);
      // The manifest too (it listed the moments of the tensors rank 0 does not hold later).
      const auto manifest = [&](const std::string& suffix) {
        const std::string file = root + "/" + name + suffix + "/ckpt/step_00000010.h5";
        h5::File f{H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)};
        return h5::read_attr_string(f.get(), "tensors");
      };
      EXPECT_EQ(manifest("_zero1"), manifest("_plain")) << name << " (" << ranks << " ranks)";
    }
  }
  // l0's ZeRO-1 file resumed with ZeRO-1 at (dp=2, ep=2) on 4 ranks: its straight 20 steps.
  const TrainSummary resumed =
      run_on(4, config("resumed", 20, {"parallel.ep=2", "parallel.zero1=true"}),
             root + "/l0_zero1/ckpt/step_00000010.h5");
  if (rank == 0) {
    ASSERT_EQ(resumed.step_losses.size(), 10u);
    for (size_t i = 0; i < 10; ++i)
      EXPECT_NEAR(resumed.step_losses[i], straight.step_losses[10 + i],
                  1e-5 * straight.step_losses[10 + i])
          << "step " << 11 + i;
  }
  MPI_Barrier(MPI_COMM_WORLD);  // rank 0's directory goes last
}

}  // namespace
}  // namespace sy
