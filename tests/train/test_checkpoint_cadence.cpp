// CheckpointCadence::numerical_failure (src/train/train_ckpt.h), what a numerical failure does to
// the checkpoints of the run that failed, with stand-in files for checkpoints (the save function
// only makes the file and `latest`): the one holding the weights that gave a non-finite loss is
// set aside and `latest` goes back along the run's own checkpoints -- not to the newest step file
// below, which after a resume from an older checkpoint belongs to a line the user went back past
// (QA: --resume auto then trained it) -- and a failure on the weights the run resumed from names
// that file. Rank 0 does the files; every rank throws. Run in test_train's np=1 and np=8.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "comm/mpi.h"
#include "common/latest.h"
#include "common/temp_dir.h"
#include "src/ckpt/checkpoint.h"
#include "src/core/error.h"
#include "src/train/signals.h"
#include "src/train/train_ckpt.h"

namespace sy {
namespace {

using sy::test::latest_in;

// The message the failure threw (every rank throws).
std::string failure(const CheckpointCadence& c, int64_t weights_step) {
  try {
    c.numerical_failure(weights_step, NumericalError("non-finite loss at step " +
                                                     std::to_string(weights_step + 1)));
  } catch (const NumericalError& e) {
    return e.what();
  }
  return "(no NumericalError)";
}

struct FakeRun {
  test::TempDir tmp;
  std::string dir = (tmp.path() / "ck").string();
  Config cfg;
  PreemptionSignals signals;
  ResumeResult resumed;

  FakeRun() {
    std::filesystem::create_directories(dir);
    cfg.checkpoint.dir = dir;
    cfg.checkpoint.every = 3;
    cfg.train.steps = 10;
  }
  void file(int64_t step) { std::ofstream(dir + "/" + ckpt::checkpoint_file_name(step)) << "x"; }
  void resume_from(int64_t step) {
    resumed.resumed = true;
    resumed.state.step = step;
    resumed.path = dir + "/" + ckpt::checkpoint_file_name(step);
    std::ofstream(dir + "/latest") << ckpt::checkpoint_file_name(step);
  }
  CheckpointCadence cadence() {
    return CheckpointCadence(cfg, MPI_COMM_WORLD, signals, resumed, [this](int64_t done) {
      file(done);
      std::ofstream(dir + "/latest") << ckpt::checkpoint_file_name(done);
      return ckpt::SaveResult{dir + "/" + ckpt::checkpoint_file_name(done), {}, {}};
    });
  }
};

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// Steps 1 and 2 of an earlier line; the run resumed from step 1 and checkpointed step 3, whose
// weights gave step 4's non-finite loss: latest goes back to step 1, step 2 is left alone.
TEST(CheckpointCadence, ASetAsideGoesBackAlongTheRunsOwnCheckpoints) {
  FakeRun run;
  run.file(1);
  run.file(2);
  run.resume_from(1);
  CheckpointCadence c = run.cadence();
  TrainSummary summary;
  std::ostringstream log;
  c.after_step(3, summary, log);  // checkpoint.every 3
  ASSERT_EQ(latest_in(run.dir), "step_00000003.h5") << log.str();
  const std::string what = failure(c, 3);
  if (world_rank() != 0) {
    EXPECT_EQ(what, "non-finite loss at step 4");
    return;
  }
  EXPECT_EQ(what,
            "non-finite loss at step 4; the checkpoint of step 3 holds the weights that "
            "gave it: " +
                run.dir +
                "/step_00000003.h5 is set aside as step_00000003.h5.nonfinite; latest names "
                "step_00000001.h5 again");
  EXPECT_EQ(latest_in(run.dir), "step_00000001.h5");
  EXPECT_TRUE(std::filesystem::exists(run.dir + "/step_00000002.h5"));
}

// The run resumed from step 3 (a checkpoint a signal wrote before a requeue, never evaluated)
// and step 4's loss is not finite: the resumed file is named and left in place, latest too. It
// said only "non-finite loss at step 4", and every resume failed the same way (QA).
TEST(CheckpointCadence, AFailureOnTheResumedWeightsNamesTheirFile) {
  FakeRun run;
  run.file(3);
  run.resume_from(3);
  const CheckpointCadence c = run.cadence();
  const std::string what = failure(c, 3);
  if (world_rank() != 0) {
    EXPECT_EQ(what, "non-finite loss at step 4");
    return;
  }
  EXPECT_EQ(what, "non-finite loss at step 4; the weights that gave it are those of " + run.dir +
                      "/step_00000003.h5, which this run resumed from (left in place: this run "
                      "did not write it); continue from an earlier checkpoint with --resume "
                      "<file>");
  EXPECT_EQ(latest_in(run.dir), "step_00000003.h5");
  EXPECT_TRUE(std::filesystem::exists(run.dir + "/step_00000003.h5"));
  // A failure at a later step (weights this run made, not checkpointed) adds nothing.
  EXPECT_EQ(failure(c, 5), "non-finite loss at step 6");
}

}  // namespace
}  // namespace sy
