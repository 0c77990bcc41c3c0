// Issue 15, item 2, "disk full during a checkpoint write": the job ends promptly with exit 1 and
// one message naming the directory and "no space left"; the previous checkpoint and `latest`
// stay intact, no partial file is left to be taken as valid, and --resume auto continues from the
// previous checkpoint. Before the fix the ranks split inside the parallel HDF5 write (some in a
// barrier, some in a broadcast) and hung, 6 times of 6.
//
// A real full disk needs a small file system: a tmpfs mounted in a private mount namespace
// (skipped where this machine does not allow mounting). The injected failure of one rank's write
// (SWITCHYARD_CKPT_FAULT ...:fail, src/train/faults.h) runs everywhere.
#include <gtest/gtest.h>

#include "faults/faults_util.h"

namespace sy::test::faults {
namespace {

// The checks a test of a tmpfs runs inside the namespace (the mount vanishes with it): the exit
// code, `latest`, the directory listing, whether step 5 verifies.
std::string report(const std::string& ck) {
  return "echo RC=$?; echo LATEST=$(cat " + ck + "/latest); ls -a " + ck + " | sed 's/^/LS /'; " +
         kBin + " ckpt info " + ck +
         "/step_00000005.h5 --no-config >/dev/null 2>&1; echo INFO5=$?; ";
}

void expect_previous_checkpoint_intact(const std::string& out) {
  EXPECT_NE(out.find("LATEST=step_00000005.h5\n"), std::string::npos) << out;
  EXPECT_NE(out.find("INFO5=0\n"), std::string::npos) << "step 5 no longer verifies\n" << out;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (!line.starts_with("LS ")) continue;
    EXPECT_TRUE(line == "LS ." || line == "LS .." || line == "LS latest" ||
                line == "LS step_00000005.h5" || line == "LS .switchyard.lock" ||
                line == "LS ballast")
        << "left behind: " << line.substr(3);
  }
}

class DiskFull : public FaultTest {
 protected:
  void SetUp() override {
    FaultTest::SetUp();
    if (!can_mount_tmpfs()) GTEST_SKIP() << "cannot mount a tmpfs here (needs CAP_SYS_ADMIN)";
  }
};

// 3 MiB hold step 5's checkpoint (0.8 MiB; the preflight asks for its estimated 2 MiB plus the
// spare kept for closing) but not step 10's next to it: refused before anything is written.
TEST_F(DiskFull, CheckpointThatCannotFitIsRefusedBeforeWriting) {
  const std::string out = path("run"), ck = path("ck");
  std::filesystem::create_directories(ck);
  Process job(in_tmpfs("3m", ck,
                       mpirun_command(4) + train(out, 20, "--set checkpoint.dir=" + ck) + "; " +
                           report(ck)),
              path("log"));
  ASSERT_NE(job.wait(180), -1) << "the job hung:\n" << job.output();
  const std::string log = job.output();
  EXPECT_NE(log.find("RC=1\n"), std::string::npos) << log;
  EXPECT_EQ(count(log, "no space left"), 1u) << "one message, from rank 0\n" << log;
  EXPECT_NE(log.find("checkpoint.dir '" + ck + "'"), std::string::npos) << log;
  // What is missing, beside the two rounded sizes (which could read alike).
  EXPECT_NE(log.find(" are free ("), std::string::npos) << log;
  EXPECT_NE(log.find(" short)"), std::string::npos) << log;
  expect_previous_checkpoint_intact(log);
}

// A writer killed mid-checkpoint leaves step_N.h5.tmp and its .spare, the .tmp holding the whole
// file's reservation (fallocate, KEEP_SIZE: a few KiB to `ls`, MiBs on disk). On a disk that
// held every checkpoint before, each resume then stopped with "no space left" until someone
// removed them by hand (found by QA). The run holds checkpoint.dir's lock, so they are removed
// before the room is counted. Here 8 MiB hold step 5 and a 6 MiB leftover of step 10's write.
TEST_F(DiskFull, AKilledWritersLeftoversDoNotStopTheResume) {
  const std::string out = path("run"), ck = path("ck");
  std::filesystem::create_directories(ck);
  const std::string leftovers = "touch " + ck + "/step_00000010.h5.tmp && fallocate -n -l 6M " +
                                ck + "/step_00000010.h5.tmp && head -c 2048 /dev/zero >> " + ck +
                                "/step_00000010.h5.tmp && " + "fallocate -l 256K " + ck +
                                "/step_00000010.h5.tmp.spare && ";
  Process job(in_tmpfs("8m", ck,
                       mpirun_command(2) + train(out, 5, "--set checkpoint.dir=" + ck) +
                           " >/dev/null 2>&1 && " + leftovers + "df -k " + ck +
                           " | sed 's/^/DF /'; " + mpirun_command(2) +
                           train(out, 10, "--set checkpoint.dir=" + ck + " --resume auto") + "; " +
                           "echo RC=$?; echo LATEST=$(cat " + ck + "/latest); ls -a " + ck +
                           " | sed 's/^/LS /'"),
              path("log"));
  ASSERT_NE(job.wait(180), -1) << "the job hung:\n" << job.output();
  const std::string log = job.output();
  ASSERT_NE(log.find("DF "), std::string::npos) << "the first run or the leftovers failed\n" << log;
  EXPECT_NE(log.find("RC=0\n"), std::string::npos) << log;
  EXPECT_EQ(log.find("no space left"), std::string::npos) << log;
  EXPECT_NE(log.find("LATEST=step_00000010.h5\n"), std::string::npos) << log;
  EXPECT_EQ(log.find(".tmp"), std::string::npos) << "a leftover is still there\n" << log;
}

// The disk fills up while step 10's checkpoint is being written (rank 0 fills the tmpfs right
// after the file is created): every rank ends together, promptly -- not at the watchdog -- and
// the next run resumes from step 5.
TEST_F(DiskFull, DiskFillingUpDuringTheWriteEndsEveryRankAndResumeFallsBack) {
  const std::string out = path("run"), ck = path("ck");
  std::filesystem::create_directories(ck);
  const std::string resume = "rm -f " + ck + "/ballast; " + mpirun_command(4) +
                             train(out, 12, "--set checkpoint.dir=" + ck + " --resume auto") +
                             "; echo RESUMED=$?";
  Process job(
      in_tmpfs("8m", ck,
               "env SWITCHYARD_CKPT_FAULT=0:created:fill:10 " + mpirun_command(4) +
                   train(out, 20, "--set checkpoint.dir=" + ck + " --set parallel.timeout_s=600") +
                   "; " + report(ck) + resume),
      path("log"));
  ASSERT_NE(job.wait(240), -1) << "the job hung:\n" << job.output();
  const std::string log = job.output();
  EXPECT_NE(log.find("RC=1\n"), std::string::npos) << log;
  EXPECT_EQ(count(log, "error: no space left"), 1u) << log;
  EXPECT_NE(log.find("checkpoint.dir '" + ck + "'"), std::string::npos) << log;
  EXPECT_EQ(log.find("timed out"), std::string::npos) << "ended by the watchdog\n" << log;
  expect_previous_checkpoint_intact(log);
  EXPECT_NE(log.find("RESUMED=0\n"), std::string::npos) << log;
  EXPECT_NE(log.find("resuming from " + ck + "/step_00000005.h5"), std::string::npos) << log;
}

// run.out_dir fills up (here a 1 MiB tmpfs holding ballast and 12 KiB free): rank 0's
// co-activation file cannot be written. Every rank ends at once with one message naming it.
// Before: HDF5's error stack, "fatal" and an abort; and with the message alone, rank 0 ended by
// itself while the others waited in the next collective until the watchdog.
TEST_F(DiskFull, AFullRunDirEndsEveryRankWithOneMessage) {
  const std::string out = path("run"), ck = path("ck");
  std::filesystem::create_directories(out);
  Process job(
      in_tmpfs("1m", out,
               "head -c 1036288 /dev/zero > " + out + "/ballast; " + mpirun_command(2) +
                   train(out, 20, "--set checkpoint.dir=" + ck + " --set parallel.timeout_s=600") +
                   "; echo RC=$?; echo METRICS:; cat " + out + "/metrics.jsonl"),
      path("log"));
  ASSERT_NE(job.wait(180), -1) << "the job hung:\n" << job.output();
  const std::string log = job.output();
  EXPECT_NE(log.find("RC=1\n"), std::string::npos) << log;
  EXPECT_EQ(count(log, "error: "), 1u) << "one message, from rank 0\n" << log;
  EXPECT_NE(log.find("error: writing the co-activation counts '" + out + "/coactivation.h5'"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("HDF5-DIAG"), std::string::npos) << log;
  EXPECT_EQ(log.find("timed out"), std::string::npos) << "ended by the watchdog\n" << log;
  // Its steps are not lost: checkpoint.dir (elsewhere) has the step the run stopped at, which
  // the message names (the steps since the last checkpoint.every were lost, and with
  // checkpoint.every: 0 all of them, while the message advised --resume auto).
  const size_t at = log.find(" is in " + ck + "/step_");
  ASSERT_NE(at, std::string::npos) << log;
  const std::string file = log.substr(at + 7 + ck.size() + 1, 16);  // step_XXXXXXXX.h5
  EXPECT_EQ(latest_of(ck), file) << log;
  EXPECT_NE(log.find("continue with --resume auto"), std::string::npos) << log;
  // And its metrics line, which fits where the counts did not: the resumed run starts after that
  // step and never writes it (metrics.jsonl missed the stop step for good). The tmpfs goes with
  // the job's mount namespace: the file is printed after METRICS:.
  const std::string stopped = std::to_string(std::stoll(file.substr(5, 8)));
  const size_t metrics = log.find("METRICS:\n");
  ASSERT_NE(metrics, std::string::npos) << log;
  EXPECT_NE(log.find("\"step\":" + stopped + ",", metrics), std::string::npos) << log;
}

// One rank's part of the collective write fails (as a full disk reported to that rank alone
// would): the ranks agree and all stop at once, one message names the rank and the directory.
TEST_F(FaultTest, OneRanksFailedWriteEndsEveryRankTogether) {
  const std::string out = path("run"), ck = out + "/checkpoints";
  Process job("env 'SWITCHYARD_CKPT_FAULT=2:wrote optim/m/layers/0/attn/wo:fail:10' " +
                  mpirun_command(4) + train(out, 20, "--set parallel.timeout_s=600"),
              path("log"));
  ASSERT_NE(job.wait(240), -1) << "the job hung:\n" << job.output();
  const std::string log = job.output();
  EXPECT_EQ(job.wait(0), 1) << log;
  EXPECT_EQ(count(log, "error: "), 1u) << "one message, from rank 0\n" << log;
  EXPECT_NE(log.find("error: no space left on the device of checkpoint.dir '" + ck + "'"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("rank 2"), std::string::npos) << log;
  EXPECT_EQ(log.find("timed out"), std::string::npos) << "ended by the watchdog\n" << log;
  EXPECT_EQ(latest_of(ck), "step_00000005.h5");
  for (const auto& e : std::filesystem::directory_iterator(ck)) {
    const std::string name = e.path().filename().string();
    EXPECT_TRUE(name == "latest" || name == "step_00000005.h5" || name == ".switchyard.lock")
        << "left behind: " << name;
  }
  const auto resumed = run_command(mpirun_command(2) + train(out, 12, "--resume auto"));
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming from " + ck + "/step_00000005.h5"), std::string::npos)
      << resumed.output;
}

// `latest` cannot be replaced (a directory in the way of its temporary file) after a step file is
// in place: the run went on only to fail the whole save (exit 1) with step_5.h5 already there and
// `latest` naming nothing newer. The step files are complete, so it is a note: the stale pointer
// is removed, the run finishes, and --resume auto takes the newest step file.
TEST_F(FaultTest, ALatestThatCannotBeUpdatedIsANoteNotAFailure) {
  const std::string out = path("run"), ck = out + "/checkpoints";
  // A `latest` naming step 5 first: the one that goes stale once step 10's is in place.
  const auto first = run_command(mpirun_command(2) + train(out, 5));
  ASSERT_EQ(first.exit_code, 0) << first.output;
  ASSERT_EQ(read_file(ck + "/latest"), "step_00000005.h5");
  std::filesystem::create_directories(ck + "/latest.tmp");
  const auto r = run_command(mpirun_command(2) + train(out, 10, "--resume auto"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(ck + "/latest could not be updated"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--resume auto takes the newest step file"), std::string::npos)
      << r.output;
  EXPECT_FALSE(std::filesystem::exists(ck + "/latest"));
  EXPECT_TRUE(std::filesystem::exists(ck + "/step_00000010.h5"));
  const auto resumed = run_command(mpirun_command(2) + train(out, 12, "--resume auto"));
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming from " + ck + "/step_00000010.h5"), std::string::npos)
      << resumed.output;
}

}  // namespace
}  // namespace sy::test::faults
