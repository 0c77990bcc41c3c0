// End-to-end training on the CPU: the tiny config learns, runs are deterministic, and gradient
// accumulation does not change the loss.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/temp_dir.h"
#include "src/config/config.h"
#include "src/data/tokens.h"
#include "src/train/loop_common.h"
#include "src/train/metrics.h"
#include "src/train/progress.h"
#include "src/train/trainer.h"

namespace sy {
namespace {

// The licence texts every Debian ships: the same data the README's default run uses.
std::vector<std::string> licence_files() {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator("/usr/share/common-licenses"))
    if (e.is_regular_file() && !e.is_symlink()) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

// One-rank runs (MPI_COMM_SELF); the executable also runs under mpirun with 8 ranks for the
// layout tests, where these would only repeat themselves.
class TrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 1) GTEST_SKIP() << "one-rank tests run in the np=1 instance";
  }
  static TrainSummary train(const Config& cfg, std::ostream& log) {
    return sy::train(cfg, log, MPI_COMM_SELF);
  }
  static void SetUpTestSuite() {
    dir_ = std::make_unique<test::TempDir>();
    PrepareOptions opt;
    opt.inputs = licence_files();
    opt.output = dir_->file("licenses.h5");
    prepare_token_file(opt);
  }
  static void TearDownTestSuite() { dir_.reset(); }

  Config tiny(const std::string& run, std::vector<std::string> extra = {}) {
    extra.push_back("data.path=" + dir_->file("licenses.h5"));
    extra.push_back("run.out_dir=" + dir_->file(run));
    return load_config(std::string(SWITCHYARD_SOURCE_DIR) + "/configs/tiny.yaml", extra);
  }

  static std::vector<nlohmann::json> metrics(const Config& cfg) {
    std::ifstream in(std::filesystem::path(cfg.run.out_dir) / "metrics.jsonl");
    std::vector<nlohmann::json> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
    return lines;
  }

  static std::unique_ptr<test::TempDir> dir_;
};
std::unique_ptr<test::TempDir> TrainTest::dir_;

TEST_F(TrainTest, TinyConfigLearns) {
  std::ostringstream log;
  // Before any update the model predicts ~uniformly over 256 bytes: val_loss ~ ln(256) = 5.545.
  const TrainSummary before = train(tiny("untrained", {"train.steps=0"}), log);
  EXPECT_NEAR(before.final_val_loss, std::log(256.0), 0.05);
  const TrainSummary after = train(tiny("trained"), log);
  // Stated margin (README): the tiny run ends at least 2 nats below ln(256).
  EXPECT_LT(after.final_val_loss, std::log(256.0) - 2.0) << log.str();
}

// The run's last line: `train.steps: 0` only evaluates (configs/README), so there is no train
// loss to report and the line must not claim one of 0.
TEST(TrainSummaryLine, NamesTheLastStepsLossOnlyWhenAStepRan) {
  TrainSummary s;
  s.final_val_loss = s.best_val_loss = 5.5;
  std::ostringstream none;
  log_done(s, nullptr, none);
  EXPECT_EQ(none.str().find("final loss 0.0000"), std::string::npos) << none.str();
  EXPECT_NE(none.str().find("done: 0 steps in 00:00:00 | final loss - | val_loss 5.5000"),
            std::string::npos)
      << none.str();
  s.first_step = 2;
  s.steps_done = 5;
  s.final_loss = 4.25;
  std::ostringstream ran;
  log_done(s, nullptr, ran);
  // Resumed from step 2: three steps ran in this process's wall time (it read "5 steps in").
  EXPECT_NE(ran.str().find("done: step 5 (3 steps in 00:00:00, resumed from step 2) | final loss "
                           "4.2500 | val_loss 5.5000"),
            std::string::npos)
      << ran.str();
  s.first_step = 0;
  std::ostringstream fresh;
  log_done(s, nullptr, fresh);
  EXPECT_NE(fresh.str().find("done: 5 steps in 00:00:00 | final loss 4.2500"), std::string::npos)
      << fresh.str();
  s.first_step = 2;
  // A loss past fixed point's room (an aux loss of 6e38) in digits and an exponent: it printed
  // as 31 digits cut at the buffer's end, which read as 6e30.
  s.final_loss = 6.0168908e38;
  std::ostringstream huge;
  log_done(s, nullptr, huge);
  EXPECT_NE(huge.str().find("| final loss 6.017e+38 | val_loss 5.5000"), std::string::npos)
      << huge.str();
  // A long run.out_dir is printed whole, with the line's end (a 320-byte buffer cut it).
  test::TempDir dir;
  const std::string deep = dir.file(std::string(60, 'a') + "/" + std::string(60, 'b') + "/" +
                                    std::string(60, 'c') + "/" + std::string(60, 'd'));
  std::filesystem::create_directories(deep);
  const MetricsWriter metrics(deep + "/metrics.jsonl", /*append=*/false);
  std::ostringstream long_path;
  log_done(s, &metrics, long_path);
  EXPECT_TRUE(long_path.str().ends_with("| metrics: " + deep + "/metrics.jsonl\n"))
      << long_path.str();
}

// A fresh run in a run.out_dir an earlier run logged to keeps that metrics.jsonl once, as .prev,
// and says so (it moved without a word, and a third run replaced the copy; found by QA).
TEST_F(TrainTest, AFreshRunSaysWhereTheEarlierMetricsWent) {
  const Config cfg = tiny("again", {"train.steps=1", "eval.sequences=2"});
  const std::string metrics = cfg.run.out_dir + "/metrics.jsonl";
  std::ostringstream first, second, third;
  train(cfg, first);
  EXPECT_EQ(first.str().find(".prev"), std::string::npos) << first.str();
  train(cfg, second);
  EXPECT_NE(second.str().find("note: " + metrics + " of an earlier run in run.out_dir is kept as " +
                              metrics + ".prev\n"),
            std::string::npos)
      << second.str();
  train(cfg, third);
  EXPECT_NE(third.str().find(".prev (replacing the one before it)"), std::string::npos)
      << third.str();
}

TEST_F(TrainTest, SameSeedGivesBitwiseIdenticalMetrics) {
  std::ostringstream log;
  const std::vector<std::string> short_run = {"train.steps=6", "eval.every=3", "log.every=1"};
  const Config a = tiny("det_a", short_run), b = tiny("det_b", short_run);
  train(a, log);
  train(b, log);
  auto ma = metrics(a), mb = metrics(b);
  ASSERT_EQ(ma.size(), mb.size());
  ASSERT_GE(ma.size(), 6u);
  for (size_t i = 0; i < ma.size(); ++i) {
    for (const char* timing : {"tokens_per_s", "step_ms", "a2a_ms", "gflops", "peak_mem_bytes"}) {
      ma[i].erase(timing);
      mb[i].erase(timing);
    }
    EXPECT_EQ(ma[i].dump(), mb[i].dump()) << "line " << i;  // dump() prints doubles exactly
  }
}

TEST_F(TrainTest, DifferentSeedsDiffer) {
  std::ostringstream log;
  const Config a = tiny("seed_a", {"train.steps=2"}),
               b = tiny("seed_b", {"train.steps=2", "run.seed=99"});
  train(a, log);
  train(b, log);
  EXPECT_NE(metrics(a)[0]["loss"].get<double>(), metrics(b)[0]["loss"].get<double>());
}

// The loss is the mean over the global batch whatever the micro-batch: accumulating 4 micro-
// batches of 2 must give the same losses as 1 micro-batch of 8 (fp32 summation-order tolerance),
// with the default sequence-scoped aux loss.
TEST_F(TrainTest, GradientAccumulationKeepsTheLoss) {
  std::ostringstream log;
  const std::vector<std::string> base = {"train.steps=5", "train.global_batch=8", "eval.every=0",
                                         "log.every=1"};
  auto with = [&](const char* run, const char* mb) {
    auto o = base;
    o.push_back(std::string("train.micro_batch=") + mb);
    return tiny(run, o);
  };
  const Config one = with("mb8", "8"), four = with("mb2", "2");
  train(one, log);
  train(four, log);
  const auto m1 = metrics(one), m4 = metrics(four);
  ASSERT_EQ(m1.size(), 6u) << "5 steps and the final evaluation";  // every step compared
  ASSERT_EQ(m1.size(), m4.size());
  for (size_t i = 0; i + 1 < m1.size(); ++i) {
    for (const char* key : {"loss", "lm_loss", "aux_loss", "z_loss", "grad_norm"}) {
      const double x = m1[i][key].get<double>(), y = m4[i][key].get<double>();
      EXPECT_NEAR(x, y, 1e-5 * std::abs(x) + 1e-7) << key << " at line " << i;
    }
  }
}

// The trainer hands the config's weight decay and clipping to AdamW (the optimizer's own tests
// call it directly: a trainer that passed 0 for either went unnoticed). One step from the same
// initial parameters p0, at lr = train.lr (train.warmup_steps=1):
//   - AdamW's first step moves an element by lr * g / (|g| + eps) (m^ = g, v^ = g^2), and the
//     decoupled decay by lr * wd * p0 more, on matrices only (SPEC 3): p1(wd) - p1(0) is
//     -lr * wd * p0 on a matrix, 0 on an RMSNorm gain and on the router bias;
//   - a gradient clipped to norm 1e-12 is far below eps = 1e-8: no element moves by more than
//     lr * 1e-4, where unclipped most move by about lr.
TEST_F(TrainTest, TheConfigsWeightDecayAndClippingReachTheOptimizer) {
  std::ostringstream log;
  const double lr = 3e-3, wd = 0.1;
  auto one_step = [&](const std::string& run, std::vector<std::string> extra) {
    for (const char* k :
         {"train.warmup_steps=1", "train.lr=0.003", "eval.every=0", "eval.sequences=1"})
      extra.emplace_back(k);
    TrainOptions o;
    o.gather_params = true;
    std::ostringstream run_log;
    return sy::train(tiny(run, extra), run_log, MPI_COMM_SELF, o).final_params;
  };
  const auto p0 = one_step("init", {"train.steps=0"});
  const auto plain =
      one_step("plain", {"train.steps=1", "train.weight_decay=0", "train.grad_clip=0"});
  const auto decayed =
      one_step("decayed", {"train.steps=1", "train.weight_decay=0.1", "train.grad_clip=0"});
  const auto clipped =
      one_step("clipped", {"train.steps=1", "train.weight_decay=0", "train.grad_clip=1e-12"});
  ASSERT_FALSE(p0.empty());
  int64_t matrices = 0, moved_by_lr = 0, elements = 0, bad_decay = 0, bad_clip = 0;
  std::string first_bad;
  for (const auto& [name, x0] : p0) {
    const auto &a = plain.at(name), &b = decayed.at(name), &c = clipped.at(name);
    ASSERT_EQ(a.size(), x0.size()) << name;
    const bool matrix =
        name.find("norm") == std::string::npos && name.compare(name.size() - 4, 4, "bias") != 0;
    matrices += matrix;
    for (size_t i = 0; i < x0.size(); ++i) {
      const double decay = matrix ? lr * wd * x0[i] : 0.0;
      // fp32 parameters near 0.02: an ulp is ~2e-9, the decay ~6e-6
      const bool decay_ok = std::abs(static_cast<double>(a[i]) - b[i] - decay) <= 3e-8;
      const bool clip_ok = std::abs(static_cast<double>(c[i]) - x0[i]) <= lr * 1e-4 + 1e-7;
      bad_decay += !decay_ok;
      bad_clip += !clip_ok;
      if ((!decay_ok || !clip_ok) && first_bad.empty())
        first_bad = name + "[" + std::to_string(i) + "]: p0 " + std::to_string(x0[i]) + ", plain " +
                    std::to_string(a[i]) + ", decayed " + std::to_string(b[i]) + ", clipped " +
                    std::to_string(c[i]);
      moved_by_lr += std::abs(static_cast<double>(a[i]) - x0[i]) > 0.5 * lr;
      ++elements;
    }
  }
  EXPECT_EQ(bad_decay, 0) << "weight decay not lr * wd * p0 on matrices (0 elsewhere); first: "
                          << first_bad;
  EXPECT_EQ(bad_clip, 0) << "a clipped step moved an element; first: " << first_bad;
  EXPECT_GT(matrices, 0);
  EXPECT_GT(moved_by_lr, elements / 2) << "unclipped, most elements move by about lr";
}

}  // namespace
}  // namespace sy
