// Checkpoints and --resume with device: cuda (issue 6), one GPU, in the np=1 instance:
// - a run that crashes after its step-10 checkpoint and resumes with --resume auto repeats the
//   uninterrupted run bit for bit: every loss of steps 11-20, the metrics lines, the final
//   parameters and the final checkpoint (moments included); in fp32 and in bf16;
// - SIGUSR1 makes the GPU trainer finish its step, checkpoint and stop with exit code 75; the
//   resumed run again matches the uninterrupted one bit for bit;
// - the files are the CPU trainer's: a GPU checkpoint resumed with device: cpu, and a CPU one
//   resumed with device: cuda, continue within fp32 reduction-order tolerance of the run that
//   wrote them;
// - an update that overflows fp32 stops the run with exit 3 before its checkpoint;
// - the co-activation counts (coactivation.h5) are the CPU run's, and a resume continues them.
// Skipped without a GPU.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpu_test_util.h"
#include "src/core/error.h"
#include "src/placement/coactivation_file.h"
#include "src/train/signals.h"
#include "train/gpu_train_util.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

// GPU against CPU after 10 steps from the same checkpoint: the CudaModel test's 10-step bound.
constexpr double kCrossDeviceTolerance = 1e-3;

TrainSummary run(const Config& cfg, TrainOptions o = {}) {
  std::ostringstream log;
  o.gather_params = true;
  return train(cfg, log, MPI_COMM_SELF, o);
}

// metrics.jsonl's lines by step (evaluations at -step), without the timing keys.
std::map<int64_t, std::string> metrics_lines(const std::string& run_dir) {
  std::map<int64_t, std::string> out;
  std::ifstream in(run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    for (const char* key : {"tokens_per_s", "step_ms", "a2a_ms", "gflops", "peak_mem_bytes"})
      j.erase(key);
    const int64_t step = j.at("step").get<int64_t>();
    out[j.contains("val_loss") ? -step : step] = j.dump();
  }
  return out;
}

class GpuResume : public ::testing::Test {
 protected:
  void SetUp() override {
    if (test::world_size() != 1) GTEST_SKIP() << "the one-GPU tests run in the np=1 instance";
    SY_REQUIRE_GPU();
    dir_ = std::make_unique<gputest::SharedRunDir>();
  }
  // The resumed run against the uninterrupted one: bit for bit from step `from` on.
  void expect_bitwise_continuation(const TrainSummary& straight, const TrainSummary& resumed,
                                   int from, const std::string& a, const std::string& b) {
    EXPECT_EQ(resumed.first_step, from);
    ASSERT_EQ(resumed.step_losses.size(), straight.step_losses.size() - from);
    for (size_t i = 0; i < resumed.step_losses.size(); ++i)
      EXPECT_EQ(resumed.step_losses[i], straight.step_losses[from + i]) << "step " << from + i + 1;
    EXPECT_EQ(resumed.final_val_loss, straight.final_val_loss);
    const auto diff = gputest::differing(straight.final_params, resumed.final_params);
    EXPECT_TRUE(diff.empty()) << diff.size() << " tensors differ, first " << diff.front();
    EXPECT_EQ(gputest::bitwise_differences(gputest::checkpoint_flat(dir_->ckpt(a, 20)),
                                           gputest::checkpoint_flat(dir_->ckpt(b, 20))),
              0u)
        << "final checkpoints (parameters and moments)";
    // The co-activation counts of every step once: those of the steps after the checkpoint that
    // the crashed run counted are dropped on resume.
    const Coactivation want_coact = read_coactivation(dir_->root() + "/" + a + "/coactivation.h5");
    const Coactivation got_coact = read_coactivation(dir_->root() + "/" + b + "/coactivation.h5");
    EXPECT_EQ(got_coact.tokens, want_coact.tokens);
    EXPECT_EQ(got_coact.counts, want_coact.counts);
    const auto want = metrics_lines(dir_->root() + "/" + a);
    const auto got = metrics_lines(dir_->root() + "/" + b);
    EXPECT_EQ(got.size(), want.size()) << "no duplicated or missing lines";
    for (const auto& [step, line] : want) {
      if (step <= from && step >= -from) continue;  // lines the resumed run kept, not wrote
      EXPECT_EQ(got.count(step) ? got.at(step) : "", line) << step;
    }
  }

  // A run with `set` that crashes at the start of step 12 -- after the step-10 checkpoint and a
  // step-11 metrics line that the resumed run must redo -- resumed with --resume auto, against
  // the same run uninterrupted.
  void crash_and_resume(const std::vector<std::string>& set, const std::string& prefix) {
    const std::string straight_name = prefix + "straight", crashed_name = prefix + "crashed";
    const TrainSummary straight = run(dir_->config(straight_name, set));
    ASSERT_EQ(straight.step_losses.size(), 20u);
    ASSERT_EQ(straight.checkpoints_written.size(), 2u);

    ::setenv("SWITCHYARD_FAULT", "0:12:throw", 1);
    EXPECT_THROW(run(dir_->config(crashed_name, set)), std::runtime_error);
    ::unsetenv("SWITCHYARD_FAULT");
    ASSERT_TRUE(fs::exists(dir_->ckpt(crashed_name, 10)));
    ASSERT_FALSE(fs::exists(dir_->ckpt(crashed_name, 20)));

    TrainOptions o;
    o.resume = "auto";
    const TrainSummary resumed = run(dir_->config(crashed_name, set), o);
    expect_bitwise_continuation(straight, resumed, 10, straight_name, crashed_name);
  }
  std::unique_ptr<gputest::SharedRunDir> dir_;
};

TEST_F(GpuResume, CrashAfterCheckpointResumesBitwise) {
  crash_and_resume({}, "");
}

// bf16: the checkpoint holds the fp32 master weights and moments only; the resumed run rebuilds
// its bf16 compute copy from them and must still repeat the uninterrupted run bit for bit.
TEST_F(GpuResume, Bf16CrashAfterCheckpointResumesBitwise) {
  crash_and_resume({"train.precision=bf16"}, "bf16-");
}

// The GPU trainer counts which experts the router chooses together as the CPU one does (it
// wrote no coactivation.h5: `placement` had nothing to read from a GPU run): after the same 20
// steps the same tokens, and the counts within 1 % of the CPU run's in all (a near tie of two
// router logits may go the other way in the GPU's fp32 sums).
TEST_F(GpuResume, CoactivationCountsAreTheCpuRuns) {
  run(dir_->config("coact-gpu"));
  run(dir_->config("coact-cpu", {"device=cpu"}));
  const Coactivation gpu = read_coactivation(dir_->root() + "/coact-gpu/coactivation.h5");
  const Coactivation cpu = read_coactivation(dir_->root() + "/coact-cpu/coactivation.h5");
  EXPECT_EQ(gpu.last_step, 20);
  EXPECT_EQ(gpu.tokens, cpu.tokens);
  ASSERT_EQ(gpu.counts.size(), cpu.counts.size());
  int64_t total = 0, off = 0;
  for (size_t i = 0; i < cpu.counts.size(); ++i) {
    total += cpu.counts[i];
    off += std::abs(gpu.counts[i] - cpu.counts[i]);
  }
  EXPECT_GT(total, 0);
  EXPECT_LE(off, total / 100) << "of " << total;
  EXPECT_EQ(gpu.sample.size(), cpu.sample.size());
}

TEST_F(GpuResume, PreemptionCheckpointsExits75AndResumesBitwise) {
  const TrainSummary straight = run(dir_->config("straight"));
  {
    // The signal is already there when the run starts: it stops after its first step.
    PreemptionSignals signals;
    ASSERT_EQ(std::raise(SIGUSR1), 0);
    TrainOptions o;
    o.signals = &signals;
    try {
      run(dir_->config("preempted"), o);
      ADD_FAILURE() << "the preempted run finished";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), kExitPreempted) << e.what();
    }
  }
  ASSERT_TRUE(fs::exists(dir_->ckpt("preempted", 1)));
  TrainOptions o;
  o.resume = "auto";
  const TrainSummary resumed = run(dir_->config("preempted"), o);
  expect_bitwise_continuation(straight, resumed, 1, "straight", "preempted");
}

TEST_F(GpuResume, CheckpointsMoveBetweenGpuAndCpu) {
  const TrainSummary gpu = run(dir_->config("gpu"));
  const TrainSummary cpu = run(dir_->config("cpu", {"device=cpu"}));
  for (const auto& [writer, device, straight] :
       {std::tuple{std::string("gpu"), std::string("cpu"), &gpu},
        std::tuple{std::string("cpu"), std::string("cuda"), &cpu}}) {
    TrainOptions o;
    o.resume = dir_->ckpt(writer, 10);
    const std::string run_name = writer + "-on-" + device;
    const TrainSummary resumed = run(dir_->config(run_name, {"device=" + device}), o);
    EXPECT_EQ(resumed.first_step, 10) << run_name;
    ASSERT_EQ(resumed.step_losses.size(), 10u) << run_name;
    for (size_t i = 0; i < 10; ++i)
      EXPECT_NEAR(resumed.step_losses[i], straight->step_losses[10 + i],
                  kCrossDeviceTolerance * straight->step_losses[10 + i])
          << run_name << ", step " << 11 + i;
    EXPECT_NEAR(resumed.final_val_loss, straight->final_val_loss,
                kCrossDeviceTolerance * straight->final_val_loss)
        << run_name;
  }
}

// A finite loss and gradient whose update overflows fp32 is SPEC 9's numerical failure on the
// GPU as on the CPU (tests/cli/test_cli.cpp's AnUpdateThatOverflows...): exit 3 at the step whose
// update overflowed, before its checkpoint. The GPU checked only the loss and the gradient norm:
// an lr of 1e39 wrote infinite weights into the step-1 checkpoint that `latest` then named, and
// a bias rate of 1e39 (the loss stays finite: the bias only ranks) trained on to exit 0.
TEST_F(GpuResume, AnUpdateThatOverflowsIsANumericalFailureBeforeItsCheckpoint) {
  int n = 0;
  for (const std::vector<std::string>& set :
       {std::vector<std::string>{"train.lr=1e39", "train.warmup_steps=0", "train.min_lr=0"},
        std::vector<std::string>{"train.grad_clip=0", "moe.z_loss_coeff=1e30"},
        std::vector<std::string>{"moe.bias_update_rate=1e39"}}) {
    const std::string name = "overflow" + std::to_string(n++);
    std::vector<std::string> all = {"train.steps=3", "checkpoint.every=1", "eval.every=0"};
    all.insert(all.end(), set.begin(), set.end());
    try {
      run(dir_->config(name, all));
      ADD_FAILURE() << set.front() << ": the run finished";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), kExitNumerical) << set.front() << ": " << e.what();
      EXPECT_NE(std::string(e.what()).find("the update of step 1 left"), std::string::npos)
          << e.what();
    }
    EXPECT_FALSE(fs::exists(dir_->ckpt(name, 1))) << set.front();
  }
}

// A loss that is not finite (the GPU's router_losses_forward kernel computes the terms) is
// SPEC 9's numerical failure as on the CPU (tests/cli/test_numerical.cpp's
// ANonFiniteLossNamesItsTermAndCoefficient): exit 3 at step 1, naming the z term and its
// coefficient, and no checkpoint of that step. No GPU test reached this exit before.
TEST_F(GpuResume, ANonFiniteLossIsANumericalFailureNamingItsTerm) {
  try {
    run(dir_->config("zloss", {"train.steps=3", "checkpoint.every=1", "eval.every=0",
                               "moe.z_loss_coeff=1e308"}));
    ADD_FAILURE() << "the run finished";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), kExitNumerical) << e.what();
    EXPECT_NE(std::string(e.what()).find("non-finite loss at step 1 (lm "), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find(", z inf: moe.z_loss_coeff 1e+308?)"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(dir_->ckpt("zloss", 1)));
}

}  // namespace
}  // namespace sy
