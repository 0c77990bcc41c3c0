// SPEC 9's numerical failures from the command line: a loss, gradient, validation loss or update
// that is not finite is exit 3 (one rank or two), the message naming it (the loss's terms, the
// coefficient behind one, the step), and the last good checkpoint kept as `latest`: a checkpoint
// of the weights that gave it is set aside, so that --resume auto goes on from the one before.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "cli/cli_runs.h"
#include "common/run_command.h"
#include "common/temp_dir.h"

namespace {

using sy::test::run_command;
const std::string kBin = SWITCHYARD_BIN;
const std::string kSrc = SWITCHYARD_SOURCE_DIR;

// A run that diverges is SPEC 9's numerical failure: exit 3 (the job's code, one rank or two), the
// message naming it, and the last good checkpoint kept as `latest`, readable. No test looked at
// exit 3 before: a trainer that threw an ordinary error (exit 1) passed them all.
// Resumed at step 2 with an lr of 1e30, step 3's update leaves finite weights whose forward
// overflows, checkpointed (checkpoints every step, no evaluation between), and step 4's loss is
// not finite. Those weights are not good: before, `latest` named step 3 and every resume failed
// at once (exit 3 at step 4 again, also with a sane lr); now step 3's file is set aside (renamed),
// `latest` names step 2 again, and a resume with the lr undone trains from step 2 to the end.
TEST(Cli, ANonFiniteLossExitsThreeKeepingTheLastGoodCheckpoint) {
  sy::test::TempDir dir;
  sy::test::cli::write_texts(dir);
  const std::string h5 = sy::test::cli::prepare(dir);
  for (int np : {1, 2}) {
    const std::string out = dir.file("run" + std::to_string(np)), ckpt = out + "/ckpt";
    const std::string train =
        (np > 1 ? sy::test::mpirun(np) : std::string()) + kBin + " train --config " + kSrc +
        "/configs/tiny.yaml --set data.path=" + h5 + " --set run.out_dir=" + out +
        " --set checkpoint.dir=" + ckpt + " --set checkpoint.every=1 --set eval.every=0" +
        " --set eval.sequences=2 --set train.micro_batch=" + std::to_string(4 / np);
    const auto first = run_command(train + " --set train.steps=2");
    ASSERT_EQ(first.exit_code, 0) << first.output;
    const auto bad = run_command(train +
                                 " --set train.steps=5 --set train.lr=1e30 "
                                 "--set train.warmup_steps=0 --resume auto");
    EXPECT_EQ(bad.exit_code, 3) << "np " << np << "\n" << bad.output;
    EXPECT_NE(bad.output.find("numerical failure: non-finite loss at step 4 (lm nan, aux nan, z "
                              "nan); the checkpoint of step 3 holds the weights that gave it: " +
                              ckpt +
                              "/step_00000003.h5 is set aside as step_00000003.h5.nonfinite; "
                              "latest names step_00000002.h5 again"),
              std::string::npos)
        << bad.output;
    EXPECT_FALSE(std::filesystem::exists(ckpt + "/step_00000003.h5"));
    EXPECT_TRUE(std::filesystem::exists(ckpt + "/step_00000003.h5.nonfinite"));
    // Its values verify, so `ckpt info` said only "ok" of it.
    const auto aside = run_command(kBin + " ckpt info " + ckpt + "/step_00000003.h5.nonfinite");
    EXPECT_EQ(aside.exit_code, 0) << aside.output;
    EXPECT_NE(aside.output.find("set aside    after a numerical failure"), std::string::npos)
        << aside.output;
    std::ifstream latest(ckpt + "/latest");
    std::string name;
    std::getline(latest, name);
    EXPECT_EQ(name, "step_00000002.h5") << bad.output;
    const auto info = run_command(kBin + " ckpt info " + ckpt + "/" + name);
    EXPECT_EQ(info.exit_code, 0) << info.output;
    const auto again = run_command(train + " --set train.steps=5 --resume auto");
    EXPECT_EQ(again.exit_code, 0) << again.output;
    EXPECT_NE(again.output.find("resuming from " + ckpt + "/step_00000002.h5 (step 2)"),
              std::string::npos)
        << again.output;
  }
}

// The run's first checkpoint holds weights whose forward overflows (an lr of 1e20 from step 1):
// set aside at step 2's non-finite loss, nothing is left to resume. --resume auto would start
// over from step 0 with no word of the run that got that far; it is refused (exit 2) naming the
// set-aside file, as over a directory of damaged checkpoints.
TEST(Cli, ResumeAutoOverOnlySetAsideCheckpointsDoesNotStartOver) {
  sy::test::TempDir dir;
  sy::test::cli::write_texts(dir);
  const std::string h5 = sy::test::cli::prepare(dir);
  const std::string out = dir.file("run"), ckpt = out + "/ckpt";
  const std::string train =
      kBin + std::string(" train --config ") + kSrc + "/configs/tiny.yaml --set data.path=" + h5 +
      " --set run.out_dir=" + out + " --set checkpoint.dir=" + ckpt +
      " --set train.steps=3 --set checkpoint.every=1 --set eval.every=0" +
      " --set eval.sequences=2 --set train.lr=1e20 --set train.warmup_steps=0";
  const auto bad = run_command(train);
  ASSERT_EQ(bad.exit_code, 3) << bad.output;
  EXPECT_NE(bad.output.find("step_00000001.h5 is set aside as step_00000001.h5.nonfinite; no "
                            "earlier checkpoint of this run is left, so latest is removed"),
            std::string::npos)
      << bad.output;
  const auto again = run_command(train + " --resume auto");
  EXPECT_EQ(again.exit_code, 2) << again.output;
  EXPECT_NE(again.output.find("holds no checkpoint to resume, only 1 set aside after a numerical "
                              "failure"),
            std::string::npos)
      << again.output;
  EXPECT_NE(again.output.find(ckpt + "/step_00000001.h5.nonfinite"), std::string::npos)
      << again.output;
  EXPECT_EQ(again.output.find("starting at step 0"), std::string::npos) << again.output;
}

// Finite weights whose forward pass overflows (QA: an lr of 1e20 left |embed| at 7e37): the
// validation loss is NaN, and the run exited 0 (one step), or with eval.every 1 wrote that step's
// checkpoint and exited 3 at the next, keeping it as the last good one (a resume failed at once).
// Now exit 3 at the evaluation, before its checkpoint; the loss of step 1 itself is finite.
TEST(Cli, ANonFiniteValidationLossIsANumericalFailureBeforeItsCheckpoint) {
  sy::test::TempDir dir;
  sy::test::cli::write_texts(dir);
  const std::string h5 = sy::test::cli::prepare(dir);
  for (const std::string steps : {"1", "3"}) {
    const std::string out = dir.file("run" + steps);
    const auto r =
        run_command(kBin + std::string(" train --config ") + kSrc +
                    "/configs/tiny.yaml --set data.path=" + h5 + " --set run.out_dir=" + out +
                    " --set checkpoint.dir=" + out + "/ckpt --set train.steps=" + steps +
                    " --set checkpoint.every=1 --set eval.every=1 --set "
                    "eval.sequences=2 --set train.lr=1e20");
    EXPECT_EQ(r.exit_code, 3) << r.output;
    EXPECT_NE(r.output.find("non-finite validation loss at step 1"), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(out + "/ckpt/step_00000001.h5")) << r.output;
  }
}

// A loss that is not finite leaves no metrics line for its step: the message says which term is
// not finite and names the coefficient behind it. It said only "non-finite loss at step 1" (QA).
TEST(Cli, ANonFiniteLossNamesItsTermAndCoefficient) {
  sy::test::TempDir dir;
  sy::test::cli::write_texts(dir);
  const std::string h5 = sy::test::cli::prepare(dir);
  const auto r =
      run_command(kBin + " train --config " + kSrc + "/configs/tiny.yaml --set data.path=" + h5 +
                  " --set run.out_dir=" + dir.file("run") +
                  " --set train.steps=3 --set eval.every=0 --set moe.z_loss_coeff=1e308");
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_NE(r.output.find("non-finite loss at step 1 (lm "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(", z inf: moe.z_loss_coeff 1e+308?)"), std::string::npos) << r.output;
  // Both terms: both coefficients, one list (review: "...?: moe.z_loss_coeff").
  const auto both =
      run_command(kBin + " train --config " + kSrc + "/configs/tiny.yaml --set data.path=" + h5 +
                  " --set run.out_dir=" + dir.file("run2") +
                  " --set train.steps=3 --set eval.every=0"
                  " --set moe.aux_loss_coeff=1.5e308 --set moe.z_loss_coeff=1e307");
  EXPECT_EQ(both.exit_code, 3) << both.output;
  EXPECT_NE(both.output.find("aux inf, z inf: moe.aux_loss_coeff 1.5e+308?, moe.z_loss_coeff "
                             "1e+307?)"),
            std::string::npos)
      << both.output;
}

// A finite loss and gradient whose update overflows fp32 (SPEC 9: a numerical failure). Before,
// only the loss and the gradient norm were checked: an AdamW v past 3.4e38 (a z-loss of 1e30
// unclipped) froze its parameters for good and the run exited 0; a router bias rate of 1e39 sent
// every token to expert 0, exit 0; an lr of 1e39 wrote infinite weights into the checkpoint that
// the exit 3 at the next step then kept as the last good one. Now exit 3 at the step whose update
// overflowed, before its checkpoint; on two ranks under ZeRO-1 (each checks its own chunks) too.
TEST(Cli, AnUpdateThatOverflowsIsANumericalFailureBeforeItsCheckpoint) {
  sy::test::TempDir dir;
  sy::test::cli::write_texts(dir);
  const std::string h5 = sy::test::cli::prepare(dir);
  int n = 0;
  for (const auto& [np, args] : std::vector<std::pair<int, std::string>>{
           {1, " --set train.lr=1e39 --set train.warmup_steps=0 --set train.min_lr=0"},
           {1, " --set train.grad_clip=0 --set moe.z_loss_coeff=1e30"},
           {1, " --set moe.bias_update_rate=1e39"},
           {2,
            " --set train.lr=1e39 --set train.warmup_steps=0 --set train.min_lr=0"
            " --set parallel.zero1=true --set train.micro_batch=2"}}) {
    const std::string out = dir.file("run" + std::to_string(n++));
    const auto r = run_command(
        (np > 1 ? sy::test::mpirun(np) : std::string()) + kBin + " train --config " + kSrc +
        "/configs/tiny.yaml --set data.path=" + h5 + " --set run.out_dir=" + out +
        " --set checkpoint.dir=" + out + "/ckpt --set train.steps=3 --set checkpoint.every=1" +
        " --set eval.every=0" + args);
    EXPECT_EQ(r.exit_code, 3) << args << "\n" << r.output;
    EXPECT_NE(r.output.find("the update of step 1 left"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("not finite in fp32"), std::string::npos) << r.output;
    EXPECT_FALSE(std::filesystem::exists(out + "/ckpt/step_00000001.h5")) << args;
  }
}

}  // namespace
