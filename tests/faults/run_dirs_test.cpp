// The run's directories and lock files (src/train/run_dirs.h) when runs meet: a run that is
// refused after claiming them removes what it made, and the run that was waiting for the lock
// must not be left holding the removed file.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>

#include "faults/faults_util.h"

namespace sy::test::faults {
namespace {

namespace fs = std::filesystem;

// Run A is refused (a --resume file that is no checkpoint) after taking run.out_dir's lock, and
// removes the lock file and the directory it made. Run B opened that lock file just before (the
// preloaded shim holds A's lock 2 s and delays B's flock 4 s): B's flock then succeeds on the
// removed file, and B trained with no lock at the path, so a third run C was let into the same
// directory and replaced B's metrics (QA: C exit 0 beside B). B now checks that its lock is the
// file at the path and takes the lock again: C is refused naming B.
TEST_F(FaultTest, ARunWaitingOnALockItsHolderRemovesTakesTheNewOne) {
  const std::string out = path("run"), bogus = path("bogus.h5");
  std::ofstream(bogus) << "not a checkpoint\n";
  const std::string one = " --set parallel.ep=1 --set train.micro_batch=2";
  const std::string slow = "LD_PRELOAD=" + std::string(SWITCHYARD_SLOW_FLOCK_LIB) +
                           " SY_TEST_FLOCK_MATCH=" + out + "/.switchyard.lock ";
  Process a(slow + "SY_TEST_FLOCK_AFTER_S=2 " +
                train(out, 5, one + " --set checkpoint.dir=" + path("ckA") + " --resume " + bogus),
            path("logA"));
  ASSERT_TRUE(wait_until(60, [&] { return fs::exists(out + "/.switchyard.lock") || !a.running(); }))
      << a.output();
  Process b(slow + "SY_TEST_FLOCK_BEFORE_S=4 " +
                train(out, 100000,
                      one + " --set checkpoint.dir=" + path("ckB") + " --set checkpoint.every=0"),
            path("logB"));
  EXPECT_EQ(a.wait(60), 2) << a.output();
  ASSERT_TRUE(wait_until(120, [&] { return fs::exists(out + "/metrics.jsonl") || !b.running(); }))
      << b.output();
  ASSERT_TRUE(b.running()) << b.output();
  const auto c = run_command(train(out, 5, one + " --set checkpoint.dir=" + path("ckC")));
  EXPECT_EQ(c.exit_code, 2) << c.output;
  EXPECT_NE(c.output.find("run.out_dir '" + out + "' is in use by another switchyard run"),
            std::string::npos)
      << c.output;
  ::kill(b.pid(), SIGUSR1);  // a checkpoint, 75
  EXPECT_EQ(b.wait(120), 75) << b.output();
}

}  // namespace
}  // namespace sy::test::faults
