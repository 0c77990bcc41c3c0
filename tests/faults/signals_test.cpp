// Issue 15, items 5, 6 and 7: the exit codes a scheduler relies on, and one run per directory.
//   - SIGUSR1/SIGTERM before training starts: exit 75, no checkpoint (there is nothing to save);
//     after the final checkpoint: exit 0. Before the fix both were 138 (killed by the signal).
//   - stops while the libraries load and MPI starts: 76 once MPI is up; a hangup to a bare train.
//   (The launch guard and jobs/local.sh: guard_test.cpp.)
//   - a finished run started again with --resume auto does nothing and says so.
//   - a second run in the same directory is refused naming the holder; a dead run's lock is
//     taken over.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "faults/faults_util.h"
#include "src/train/signals.h"

namespace sy::test::faults {
namespace {

// Rank 0 stops itself at start-up; SIGTERM reaches every rank (as SLURM sends it); rank 0
// continues and finds it: the job exits 76 at once without writing anything (75 said a checkpoint
// was written, and the job script requeued a start that made no progress).
TEST_F(FaultTest, SignalBeforeTrainingStartsExits76WithoutCheckpoint) {
  const std::string out = path("run");
  Process job("env SWITCHYARD_CKPT_FAULT=0:start:stop " + mpirun_command(2) + train(out, 20),
              path("log"));
  const pid_t rank0 = job.rank_pid(0), rank1 = job.rank_pid(1);
  ASSERT_GT(rank0, 0) << job.output();
  ASSERT_TRUE(wait_stopped(rank0)) << job.output();
  ::kill(rank1, SIGTERM);
  ::kill(rank0, SIGTERM);
  ::kill(rank0, SIGCONT);
  const int code = job.wait(120);
  const std::string log = job.output();
  EXPECT_EQ(code, 76) << log;
  EXPECT_NE(log.find("SIGTERM before training started"), std::string::npos) << log;
  EXPECT_FALSE(std::filesystem::exists(out + "/checkpoints/latest")) << log;
}

// `command` run with rank 0 held (SIGSTOP) where SWITCHYARD_CKPT_FAULT=0:<fault> says ("end:stop",
// "stop_check:stop:10"), then sent SIGUSR1 and woken: its exit code (-2 when rank 0 never
// stopped there) and output.
std::pair<int, std::string> usr1_while_held(const std::string& fault, const std::string& command,
                                            const std::string& log_path) {
  Process job("env SWITCHYARD_CKPT_FAULT=0:" + fault + " " + command, log_path);
  const pid_t rank0 = job.rank_pid(0);
  if (rank0 <= 0 || !wait_stopped(rank0)) return {-2, job.output()};
  // To rank 0's main thread (its tid is its pid), the one held at the check: sent to the process,
  // another thread (the watchdog's, OpenMP's) could take it on SIGCONT and set the flag only after
  // the main thread had read it (the test failed 1 run in 4 under load).
  ::syscall(SYS_tgkill, rank0, rank0, SIGUSR1);
  ::kill(rank0, SIGCONT);
  const int code = job.wait(120);
  return {code, job.output()};
}

// The last step and the final checkpoint are done when SIGUSR1 comes: the run has finished.
TEST_F(FaultTest, SignalAfterTheFinalCheckpointExits0) {
  const std::string out = path("run");
  const auto [code, log] =
      usr1_while_held("end:stop", mpirun_command(2) + train(out, 10), path("log"));
  EXPECT_EQ(code, 0) << log;
  EXPECT_EQ(latest_of(out + "/checkpoints"), "step_00000010.h5");
}

// SIGUSR1 in the last step (rank 0 held at its stop check after step 10): the run is safe on disk
// at once, then finishes -- its final evaluation, the checkpoint again with it, exit 0. Before, it
// exited 75 without the final evaluation, and the requeued run found the run complete, so the
// final val_loss was never computed.
TEST_F(FaultTest, SignalInTheLastStepFinishesWithTheFinalEvaluation) {
  const std::string out = path("run");
  const auto [code, log] =
      usr1_while_held("stop_check:stop:10", mpirun_command(2) + train(out, 10), path("log"));
  EXPECT_EQ(code, 0) << log;
  EXPECT_NE(log.find("in the last step: checkpoint written; finishing the run"), std::string::npos)
      << log;
  // Step 5's and step 10's (written twice, counted once).
  EXPECT_NE(log.find("| 2 checkpoint(s) written |"), std::string::npos) << log;
  EXPECT_NE(read_file(out + "/metrics.jsonl").find("{\"step\":10,\"val_loss\":"), std::string::npos)
      << read_file(out + "/metrics.jsonl");
  EXPECT_EQ(latest_of(out + "/checkpoints"), "step_00000010.h5");
  const auto info = run_command(kBin + " ckpt info " + out + "/checkpoints/step_00000010.h5");
  EXPECT_EQ(info.exit_code, 0) << info.output;
  EXPECT_EQ(info.output.find("last none"), std::string::npos) << "the final val_loss is stored\n"
                                                              << info.output;
}

// The same, but the final evaluation finds the last step's weights overflowing (step 6 at an lr
// of 1e20 -- min_lr too: the last step trains at min_lr -- resumed from a sane step 5): exit 3, and
// the checkpoint the signal wrote before the evaluation is set aside with `latest` back at step 5.
// Before, `latest` named step 6 and a
// `--resume auto` found the run complete (exit 0) with weights that cannot be evaluated.
TEST_F(FaultTest, SignalInTheLastStepOfWeightsThatOverflowLeavesNoCheckpointOfThem) {
  const std::string out = path("run"), ckpt = out + "/checkpoints";
  const auto sane = run_command(mpirun_command(2) + train(out, 5));
  ASSERT_EQ(sane.exit_code, 0) << sane.output;
  const auto [code, log] = usr1_while_held(
      "stop_check:stop:6",
      mpirun_command(2) +
          train(out, 6,
                "--set train.lr=1e20 --set train.min_lr=1e20 --set train.warmup_steps=0 "
                "--resume auto"),
      path("log"));
  EXPECT_EQ(code, 3) << log;
  EXPECT_NE(log.find("in the last step: checkpoint written; finishing the run"), std::string::npos)
      << log;
  EXPECT_NE(log.find("non-finite validation loss at step 6"), std::string::npos) << log;
  EXPECT_NE(log.find("step_00000006.h5 is set aside as step_00000006.h5.nonfinite; latest names "
                     "step_00000005.h5 again"),
            std::string::npos)
      << log;
  EXPECT_EQ(latest_of(ckpt), "step_00000005.h5");
  EXPECT_FALSE(std::filesystem::exists(ckpt + "/step_00000006.h5")) << log;
}

// Output to a file (a batch job's log, nohup) is written as it is said, not when a buffer fills:
// with a lone rank held at the start of step 1, the header is there to read. It was not until the
// first step's line (an empty log for a slow first step; found by QA).
TEST_F(FaultTest, TheRunsHeaderReachesALogFileBeforeTheFirstStep) {
  const std::string out = path("run");
  Process job("SWITCHYARD_FAULT=0:1:hang " + train(out, 10, "--set parallel.ep=1"), path("log"));
  EXPECT_TRUE(wait_until(60, [&] {
    return job.output().find("model: ") != std::string::npos || !job.running();
  })) << job.output();
  const std::string log = job.output();
  EXPECT_TRUE(job.running()) << log;
  for (const char* line : {"resolved config:", "data: ", "model: "})
    EXPECT_NE(log.find(line), std::string::npos) << line << "\n" << log;
}

// The process-wide handlers stay after their owner is gone: a signal during exit (MPI_Finalize,
// static destructors) is recorded, not fatal.
TEST(FaultsSignals, ProcessHandlersOutliveTheirOwner) {
  { PreemptionSignals keep(PreemptionSignals::Mode::kRecord, PreemptionSignals::Restore::kNever); }
  std::raise(SIGUSR1);  // the default action would end this test binary here
  std::raise(SIGTERM);
  SUCCEED();
}

// A stop that comes while train's shared libraries initialize, after exec and before main (what a
// rank gets when mpirun forwards a stop the moment it has started it), ends it with 76 once
// MPI_Init has returned. The handlers went in first thing in main, after libucs's and
// OpenBLAS's constructors: the rank died of it (138). A rank that ended while MPI started (its
// own PMIx connection or another rank's under way) left mpirun deadlocked in its finalize.
TEST_F(FaultTest, AStopWhileTrainsLibrariesLoadExits76OnceMpiIsUp) {
  const std::string out = path("run"), mpi_up = path("mpi_up");
  Process job("LD_PRELOAD=" + std::string(SWITCHYARD_RAISE_USR1_LIB) +
                  " SY_TEST_MPI_UP_FILE=" + mpi_up + " " + train(out, 20),
              path("log"));
  const int code = job.wait(60);
  const std::string log = job.output();
  EXPECT_EQ(code, 76) << log;
  EXPECT_NE(log.find("SIGUSR1 before training started"), std::string::npos) << log;
  EXPECT_EQ(read_file(mpi_up), "0\n") << "ended before MPI_Init returned\n" << log;
  EXPECT_FALSE(std::filesystem::exists(out + "/checkpoints")) << log;
}

// ... but not later than 10 s after it: a start-up that does not return (here a stall of 100 s
// before main) is not waited for until parallel.timeout_s.
TEST_F(FaultTest, AStopWhileTheStartUpStallsExits76AfterTenSeconds) {
  const std::string out = path("run"), mpi_up = path("mpi_up");
  const auto t0 = Clock::now();
  Process job("LD_PRELOAD=" + std::string(SWITCHYARD_RAISE_USR1_LIB) +
                  " SY_TEST_STALL_S=100 SY_TEST_MPI_UP_FILE=" + mpi_up + " " + train(out, 20),
              path("log"));
  const int code = job.wait(60);
  const double took = seconds_since(t0);
  const std::string log = job.output();
  EXPECT_EQ(code, 76) << log;
  EXPECT_NE(log.find("SIGUSR1 before training started"), std::string::npos) << log;
  EXPECT_GE(took, 9.0) << log;
  EXPECT_LT(took, 30.0) << log;
  EXPECT_FALSE(std::filesystem::exists(mpi_up)) << log;
}

// A hangup while train's libraries initialize (a terminal closed at once) ends it with 76 as
// SIGUSR1 does. libucs's constructor took SIGHUP for UCX's debug handler, which swallowed it: the
// run trained to its end and exited 0, or died of it (129) before that constructor.
TEST_F(FaultTest, AHangupWhileTrainsLibrariesLoadExits76) {
  const std::string out = path("run");
  Process job("LD_PRELOAD=" + std::string(SWITCHYARD_RAISE_USR1_LIB) + " SY_TEST_RAISE=HUP " +
                  train(out, 20, "--set parallel.ep=1"),
              path("log"));
  const int code = job.wait(60);
  const std::string log = job.output();
  EXPECT_EQ(code, 76) << log;
  EXPECT_NE(log.find("SIGHUP before training started"), std::string::npos) << log;
}

// A hangup (the terminal of a bare `train` closed) stops it with a checkpoint, as SIGTERM does.
// UCX's debug handler took SIGHUP before main: the run went on without a word.
TEST_F(FaultTest, AHangupStopsABareTrainWithACheckpoint) {
  const std::string out = path("run");
  Process job(train(out, 100000, "--set parallel.ep=1 --set checkpoint.every=0"), path("log"));
  ASSERT_TRUE(trained_a_few_steps(job, out)) << job.output();
  ::kill(job.pid(), SIGHUP);
  EXPECT_EQ(job.wait(60), 75) << job.output();
  EXPECT_NE(job.output().find("preempted (SIGHUP) after step"), std::string::npos) << job.output();
  EXPECT_FALSE(latest_of(out + "/checkpoints").empty()) << job.output();
}

// Item 6: no second evaluation line, no "final loss 0.0000", metrics.jsonl untouched.
TEST_F(FaultTest, FinishedRunStartedAgainIsANoOp) {
  const std::string out = path("run");
  auto r = run_command(mpirun_command(2) + train(out, 10, "--set eval.every=5"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string metrics = read_file(out + "/metrics.jsonl");
  r = run_command(mpirun_command(2) + train(out, 10, "--set eval.every=5 --resume auto"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("is already complete"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("final loss"), std::string::npos) << r.output;
  EXPECT_EQ(read_file(out + "/metrics.jsonl"), metrics) << "metrics.jsonl changed";
}

// A SIGTERM while a complete run started again ends (MPI_Finalize, teardown) leaves it exit 0:
// it said "before training started ... exiting with 76", and a job script ran it again. Sent as
// soon as the line is out (polled every millisecond), to a process still running.
TEST_F(FaultTest, ASignalWhileACompleteRunEndsLeavesItExit0) {
  const std::string out = path("run");
  const std::string one_rank = "--set parallel.ep=1";
  auto r = run_command(train(out, 10, one_rank));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  int hit = 0;
  for (int attempt = 0; attempt < 5 && hit < 2; ++attempt) {
    Process job(train(out, 10, one_rank + " --resume auto"), path("log" + std::to_string(attempt)));
    const auto t0 = Clock::now();
    while (job.output().find("is already complete") == std::string::npos && seconds_since(t0) < 60)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const std::string stat = read_file("/proc/" + std::to_string(job.pid()) + "/stat");
    const size_t close = stat.rfind(')');
    const bool alive =
        close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
    if (alive && ::kill(job.pid(), SIGTERM) == 0) ++hit;
    EXPECT_EQ(job.wait(60), 0) << job.output();
  }
  EXPECT_GT(hit, 0) << "no SIGTERM reached the ending run";
}

// Item 7: while one run holds run.out_dir, a second is refused naming the holder; both the
// first run's metrics and its checkpoints are its own.
TEST_F(FaultTest, SecondRunInTheSameDirectoryIsRefusedNamingTheHolder) {
  const std::string out = path("run");
  Process first(mpirun_command(2) + train(out, 100000, "--set checkpoint.every=0"), path("log1"));
  const pid_t holder = first.rank_pid(0);
  ASSERT_GT(holder, 0) << first.output();
  ASSERT_TRUE(wait_until(120, [&] {
    return read_file(out + "/.switchyard.lock").find("pid") != std::string::npos ||
           !first.running();
  })) << first.output();
  const auto second = run_command(mpirun_command(2) + train(out, 10));
  EXPECT_EQ(second.exit_code, 2) << second.output;
  EXPECT_EQ(count(second.output, "error: "), 1u) << second.output;
  EXPECT_NE(second.output.find("run.out_dir '" + out + "' is in use by another switchyard run"),
            std::string::npos)
      << second.output;
  // The holder as its lock file names it: this machine and the first run's rank 0.
  char host[256] = {};
  EXPECT_EQ(::gethostname(host, sizeof host - 1), 0);
  EXPECT_NE(second.output.find("(host " + std::string(host) + " pid " + std::to_string(holder) +
                               " since "),
            std::string::npos)
      << second.output;
  EXPECT_NE(second.output.find("; lock file " + out + "/.switchyard.lock)"), std::string::npos)
      << second.output;
  ASSERT_TRUE(first.running()) << "the second run ended the first\n" << first.output();
  ::kill(first.pid(), SIGUSR1);  // mpirun forwards it: checkpoint, 75
  EXPECT_EQ(first.wait(120), 75) << first.output();
}

// A lock file that cannot be opened (here a directory in its place) is exit 2 at start, naming
// the key, the lock file and the system's reason, before any work.
TEST_F(FaultTest, LockFileThatCannotBeOpenedIsNamed) {
  const std::string out = path("run"), lock = out + "/.switchyard.lock";
  std::filesystem::create_directories(lock);
  const auto r = run_command(mpirun_command(2) + train(out, 2));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(count(r.output, "error: "), 1u) << r.output;
  EXPECT_NE(r.output.find("error: run.out_dir '" + out + "' is not writable (opening " + lock +
                          ": Is a directory)"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("step "), std::string::npos) << "work began before the check";
}

// A lock file left by a run that died names it; the next run takes the lock over and says so.
TEST_F(FaultTest, LockOfADeadRunIsTakenOver) {
  const std::string out = path("run");
  std::filesystem::create_directories(out);
  std::ofstream(out + "/.switchyard.lock") << "host elsewhere pid 999999 since 2020-01-01\n";
  const auto r = run_command(mpirun_command(2) + train(out, 2));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("taking over the lock of a run that ended without releasing it (host "
                          "elsewhere pid 999999"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace sy::test::faults
