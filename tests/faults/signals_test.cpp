// Issue 15, items 5, 6 and 7: the exit codes a scheduler relies on, and one run per directory.
//   - SIGUSR1/SIGTERM before training starts: exit 75, no checkpoint (there is nothing to save);
//     after the final checkpoint: exit 0. Before the fix both were 138 (killed by the signal).
//   - SIGTERM to mpirun (as SLURM sends it): 75 through `switchyard guard`; plain mpirun kills
//     the ranks a second later and exits 1.
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

// Waits until `job` has logged step 3 into <out>/metrics.jsonl (or ended).
bool trained_a_few_steps(const Process& job, const std::string& out) {
  return wait_until(120, [&] {
    return read_file(out + "/metrics.jsonl").find("\"step\":3,") != std::string::npos ||
           !job.running();
  });
}

// What a terminal's Ctrl-C reaches: the job's process group, which is `job` and its processes
// down to `levels` below it (the launcher's ranks run in process groups of their own):
// guard -> mpirun is 1 level, local.sh -> guard -> mpirun 2.
std::vector<pid_t> foreground_group(pid_t job, int levels) {
  std::vector<pid_t> group = {job};
  for (size_t first = 0, level = 0; level < static_cast<size_t>(levels); ++level) {
    const size_t last = group.size();
    for (size_t i = first; i < last; ++i)
      for (pid_t c : children_of(group[i])) group.push_back(c);
    first = last;
  }
  return group;
}

// `jobs/local.sh -n 2` running `train_cmd` (a FaultTest::train command line) with SY_BIN=`bin`,
// under `bash` (with its flags).
std::string local_sh(const std::string& train_cmd, const std::string& bin = kBin,
                     const std::string& bash = "bash") {
  const std::string prefix = kBin + " train ";
  EXPECT_EQ(train_cmd.rfind(prefix, 0), 0u) << train_cmd;
  return "SY_BIN=" + bin + " " + bash + " " + kSrc + "/jobs/local.sh -n 2 " +
         train_cmd.substr(prefix.size());
}

// Waits until jobs/local.sh's first line, which says how to stop the run, is out.
bool advertised_its_stop(const Process& job) {
  return wait_until(60, [&] {
    return job.output().find("stops it with a checkpoint): mpirun") != std::string::npos;
  });
}

// `switchyard guard -- <shell> <launcher>`, where the launcher traps SIGUSR1 to exit 75, says
// "ready", runs `wait_step` and then creates `marker` and loops in processes that ignore SIGUSR1.
// A SIGTERM to the guard once the launcher is ready must reach it only after `wait_step`: the
// launcher exits 75 with `marker` made.
void expect_the_stop_held_through(const std::string& wait_step, const std::string& launcher,
                                  const std::string& marker, const std::string& log,
                                  const std::string& shell = "sh") {
  std::ofstream(launcher) << "trap 'exit 75' USR1\n"
                             "echo ready\n"
                          << wait_step << "\ntouch " << marker
                          << "\nwhile :; do (trap '' USR1; exec sleep 0.1); done\n";
  Process job(kBin + " guard -- " + shell + " " + launcher, log);
  ASSERT_TRUE(wait_until(30, [&] { return job.output().find("ready") != std::string::npos; }))
      << job.output();
  ::kill(job.pid(), SIGTERM);
  EXPECT_EQ(job.wait(20), 75) << job.output();
  EXPECT_TRUE(std::filesystem::exists(marker)) << "passed before `" << wait_step << "` was over\n"
                                               << job.output();
}

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

// SIGTERM to mpirun alone (a scheduler or a user signalling the launcher): under the guard the
// ranks checkpoint and the job exits 75.
TEST_F(FaultTest, SigtermToMpirunUnderTheGuardCheckpointsAndExits75) {
  const std::string out = path("run");
  Process job(
      kBin + " guard -- " + mpirun_command(4) + train(out, 100000, "--set checkpoint.every=0"),
      path("log"));
  ASSERT_TRUE(trained_a_few_steps(job, out)) << job.output();
  const std::vector<pid_t> launcher = children_of(job.pid());
  ASSERT_EQ(launcher.size(), 1u) << job.output();
  ::kill(launcher[0], SIGTERM);
  const int code = job.wait(120);
  const std::string log = job.output();
  EXPECT_EQ(code, 75) << log;
  EXPECT_NE(log.find("preempted (SIGUSR1) after step"), std::string::npos) << log;
  const std::string latest = latest_of(out + "/checkpoints");
  ASSERT_FALSE(latest.empty()) << log;
  EXPECT_EQ(run_command(kBin + " ckpt info " + out + "/checkpoints/" + latest).exit_code, 0);
}

// A launcher that drops the first SIGUSR1, as mpirun does with one that comes before its ranks
// exist: the guard sends it again until the launcher ends. It passed it once, and a stop in a
// job's first tenth of a second trained to the end with exit 0. (The launcher's sleeps ignore
// SIGUSR1, as ranks catch it: the guard does not hold it for them.)
TEST_F(FaultTest, TheGuardPassesTheStopAgainUntilTheLauncherEnds) {
  const std::string launcher = path("launcher.sh");
  std::ofstream(launcher) << "n=0\n"
                             "trap 'n=$((n+1))' USR1\n"
                             "echo ready\n"
                             "i=0\n"
                             "while [ $i -lt 300 ]; do\n"
                             "  [ $n -ge 2 ] && exit 75\n"
                             "  (trap '' USR1; exec sleep 0.1)\n"
                             "  i=$((i+1))\n"
                             "done\n"
                             "exit 0\n";
  Process job(kBin + " guard -- sh " + launcher, path("log"));
  ASSERT_TRUE(wait_until(30, [&] { return job.output().find("ready") != std::string::npos; }))
      << job.output();
  ::kill(job.pid(), SIGTERM);
  EXPECT_EQ(job.wait(20), 75) << job.output();
}

// Once a stop has been passed, the launcher is not sent another when it no longer catches SIGUSR1:
// mpirun takes its forwarding down while it ends the job its ranks left, and the resend 2 s after
// the first killed it (the guard, and jobs/local.sh, exited 138 where the ranks had exited 76).
// Here the launcher drops its trap on the first stop and takes 3 s to end.
TEST_F(FaultTest, TheGuardDoesNotResendTheStopToALauncherThatStoppedCatchingIt) {
  const std::string launcher = path("launcher.sh");
  std::ofstream(launcher)
      << "got=\n"
         "trap 'got=1' USR1\n"
         "echo ready\n"
         "while [ -z \"$got\" ]; do (trap '' USR1; exec sleep 0.1); done\n"
         "trap - USR1\n"
         "i=0\n"
         "while [ $i -lt 30 ]; do (trap '' USR1; exec sleep 0.1); i=$((i+1)); done\n"
         "exit 75\n";
  Process job(kBin + " guard -- sh " + launcher, path("log"));
  ASSERT_TRUE(wait_until(30, [&] { return job.output().find("ready") != std::string::npos; }))
      << job.output();
  std::this_thread::sleep_for(std::chrono::milliseconds(5500));  // past the launcher's start-up
  ::kill(job.pid(), SIGTERM);
  EXPECT_EQ(job.wait(30), 75) << job.output();
}

// The stop is held while a process below the launcher would die of SIGUSR1 (here a `sleep`, as
// a rank is between its exec and main's handler), then passed: the launcher's trap runs after
// the sleep. It went at once, and a rank that had not yet reached main died of it (exit 138).
TEST_F(FaultTest, TheGuardHoldsTheStopWhileAProcessBelowWouldDieOfIt) {
  expect_the_stop_held_through("sleep 2", path("launcher.sh"), path("slept"), path("log"));
}

// ... also for one that already catches other signals, as a rank does once libucs's constructor
// has taken SIGHUP and before main takes SIGUSR1 (here perl with a SIGHUP handler). The hold
// looked for no handler at all and let the stop through to it.
TEST_F(FaultTest, TheGuardHoldsTheStopForAProcessThatCatchesOnlyOtherSignals) {
  expect_the_stop_held_through("perl -e '$SIG{HUP} = sub {}; sleep 2'", path("launcher.sh"),
                               path("slept"), path("log"));
}

// ... and while the launcher has only just started and has started nothing yet (mpirun before it
// forks its ranks, which it forwards a stop to as soon as they exist: the CI run's rank 1 died of
// one, 138). Here the launcher waits a second before its first process, in bash's `read -t` on a
// FIFO nobody writes (a busy loop in its place took over the 5 s of start-up on a loaded machine).
TEST_F(FaultTest, TheGuardHoldsTheStopUntilAYoungLauncherHasStartedItsProcesses) {
  const std::string fifo = path("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  expect_the_stop_held_through("read -t 1 <> " + fifo, path("launcher.sh"), path("started"),
                               path("log"), "bash");
}

// ... also for a process the launcher has forked and not yet exec'd: it shows the launcher's
// handler, which a rank loses at its exec and gets back only after its dynamic loader. The stop
// went at once, and mpirun forwarded it to a rank just exec'd (QA: 138). Here the launcher
// passes it on to perl, as mpirun does to its ranks, and perl's fork execs after 1.5 s; perl
// notes whether the stop came before that.
TEST_F(FaultTest, TheGuardHoldsTheStopForAForkThatHasNotExecdYet) {
  const std::string launcher = path("launcher.sh"), execd = path("execd"), seen = path("seen");
  // perl's handlers run between its statements: it waits in short selects, not in waitpid.
  std::ofstream(launcher) << "perl -e '$SIG{USR1} = sub { $when //= -e \"" << execd
                          << "\" ? \"after\" : \"before\" }; "
                             "if (($p = fork()) == 0) { select(undef, undef, undef, 1.5); "
                             "open(F, \">"
                          << execd
                          << "\"); close(F); exec(\"sleep\", \"1\"); } "
                             "for (1 .. 100) { last if defined $when; select(undef, undef, undef, "
                             "0.05); } waitpid($p, 0); open(F, \">"
                          << seen
                          << "\"); print F $when; close(F)' &\n"
                             "pid=$!\n"
                             "trap 'kill -USR1 $pid' USR1\n"
                             "echo ready\n"
                             "wait $pid; wait $pid\n"
                             "exit 75\n";
  Process job(kBin + " guard -- sh " + launcher, path("log"));
  ASSERT_TRUE(wait_until(30, [&] { return job.output().find("ready") != std::string::npos; }))
      << job.output();
  ::kill(job.pid(), SIGTERM);
  EXPECT_EQ(job.wait(30), 75) << job.output();
  EXPECT_EQ(read_file(seen), "after") << job.output();
}

// ... and while a young launcher is still starting processes: mpirun forwards a stop to each rank
// as it forks it, and one forked after the guard had seen the others ready died of it (QA, 1 run
// in ~1000: 138). Here the launcher starts A, which catches SIGUSR1 at once, and 0.2 s later B,
// which catches it only after 0.3 s, and passes a stop it got before to both once B has exec'd.
TEST_F(FaultTest, TheGuardHoldsTheStopWhileAYoungLauncherIsStillStartingProcesses) {
  const std::string launcher = path("launcher.sh"), fifo = path("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  // $1: a FIFO nobody writes, for bash's `read -t` (a wait without a process of its own).
  std::ofstream(launcher) << R"(trap 'stop=1; [ -z "$b" ] || kill -USR1 $a $b' USR1
perl -e '$SIG{USR1} = sub { exit 76 }; sleep 30' & a=$!
echo ready
read -t 0.2 <> "$1"
perl -e 'select(undef, undef, undef, 0.3); $SIG{USR1} = sub { exit 76 }; sleep 30' & b=$!
read -t 0.05 <> "$1"
[ -z "$stop" ] || kill -USR1 $a $b
while kill -0 $a 2>/dev/null || kill -0 $b 2>/dev/null; do read -t 0.05 <> "$1"; done
wait $a; ra=$?; wait $b; echo "A $ra B $?"
exit 75
)";
  Process job(kBin + " guard -- bash " + launcher + " " + fifo, path("log"));
  ASSERT_TRUE(wait_until(30, [&] { return job.output().find("ready") != std::string::npos; }))
      << job.output();
  ::kill(job.pid(), SIGTERM);
  EXPECT_EQ(job.wait(30), 75) << job.output();
  EXPECT_NE(job.output().find("A 76 B 76"), std::string::npos) << job.output();
}

// ... but only while they change: a young launcher whose processes have been the same for a
// second gets the stop at the next tick. It was held half a second from whenever it came (review),
// at least 0.5 s every time; the fastest of three tries is well under that.
TEST_F(FaultTest, TheGuardPassesTheStopAtOnceWhenAYoungLaunchersProcessesAreSettled) {
  const std::string launcher = path("launcher.sh");
  std::ofstream(launcher) << "perl -e '$SIG{USR1} = sub { exit 76 }; sleep 30' &\n"
                             "trap 'exit 75' USR1\n"
                             "echo ready\n"
                             "wait\n";
  double fastest = 1e9;
  for (int attempt = 0; attempt < 3; ++attempt) {
    Process job(kBin + " guard -- bash " + launcher, path("log" + std::to_string(attempt)));
    ASSERT_TRUE(wait_until(30, [&] { return job.output().find("ready") != std::string::npos; }))
        << job.output();
    std::this_thread::sleep_for(std::chrono::seconds(1));  // settled, and the launcher still young
    const auto t0 = Clock::now();
    ::kill(job.pid(), SIGTERM);
    EXPECT_EQ(job.wait(20), 75) << job.output();
    fastest = std::min(fastest, seconds_since(t0));
  }
  EXPECT_LT(fastest, 0.45);
}

// ... but not for a long-lived helper below the launcher that the signal never goes to (a
// multi-node mpirun's ssh clients): past its start-up the stop goes at once. It was held the
// whole 10 s, a third of a 30 s preemption grace.
TEST_F(FaultTest, TheGuardDoesNotHoldTheStopForALongLivedHelper) {
  const std::string launcher = path("launcher.sh");
  std::ofstream(launcher) << "sleep 1000 &\n"
                             "helper=$!\n"
                             "trap 'kill $helper; exit 75' USR1\n"
                             "echo ready\n"
                             "while :; do (trap '' USR1; exec sleep 0.1); done\n";
  Process job(kBin + " guard -- sh " + launcher, path("log"));
  ASSERT_TRUE(wait_until(30, [&] { return job.output().find("ready") != std::string::npos; }))
      << job.output();
  std::this_thread::sleep_for(std::chrono::milliseconds(5500));  // the helper is past start-up
  const auto t0 = Clock::now();
  ::kill(job.pid(), SIGTERM);
  EXPECT_EQ(job.wait(20), 75) << job.output();
  EXPECT_LT(seconds_since(t0), 3.0) << job.output();
}

// SLURM's way: every process of the job (guard, mpirun, ranks) gets SIGTERM at once.
TEST_F(FaultTest, SigtermToTheWholeJobUnderTheGuardExits75) {
  const std::string out = path("run");
  Process job(
      kBin + " guard -- " + mpirun_command(2) + train(out, 100000, "--set checkpoint.every=0"),
      path("log"));
  ASSERT_TRUE(trained_a_few_steps(job, out)) << job.output();
  for (pid_t p : descendants_of(job.pid())) ::kill(p, SIGTERM);
  ::kill(job.pid(), SIGTERM);
  EXPECT_EQ(job.wait(120), 75) << job.output();
  EXPECT_FALSE(latest_of(out + "/checkpoints").empty()) << job.output();
}

// Ctrl-C in a terminal: SIGINT to the foreground group, the guard and the launcher together.
// The guard passes it on like SIGTERM and waits: the ranks checkpoint and the job exits 75.
// (Before, the guard died of it at once with 130 while the ranks ran on with nobody to report.)
// SIGHUP (the terminal closed) likewise.
TEST_F(FaultTest, CtrlCOrHangupUnderTheGuardCheckpointsAndExits75) {
  for (int sig : {SIGINT, SIGHUP}) {
    SCOPED_TRACE(sig == SIGINT ? "SIGINT" : "SIGHUP");
    const std::string out = path(std::string("run_") + (sig == SIGINT ? "int" : "hup"));
    Process job(
        kBin + " guard -- " + mpirun_command(2) + train(out, 100000, "--set checkpoint.every=0"),
        path("log"));
    ASSERT_TRUE(trained_a_few_steps(job, out)) << job.output();
    const std::vector<pid_t> launcher = children_of(job.pid());
    ASSERT_EQ(launcher.size(), 1u) << job.output();
    ::kill(job.pid(), sig);
    if (sig == SIGINT) ::kill(launcher[0], sig);
    EXPECT_EQ(job.wait(120), 75) << job.output();
    EXPECT_FALSE(latest_of(out + "/checkpoints").empty()) << job.output();
  }
}

// Ranks that do not stop (rank 0 hangs at step 3; the others wait for it): the first Ctrl-C
// asks for a checkpoint that cannot come, the second kills the launcher and every rank at once,
// from the foreground guard and from jobs/local.sh. Nothing is left running.
TEST_F(FaultTest, SecondCtrlCKillsRanksThatDoNotStop) {
  const std::string out = path("run");
  const std::string train_cmd = train(out, 100000, "--set parallel.timeout_s=0");
  for (const bool under_local_sh : {false, true}) {
    SCOPED_TRACE(under_local_sh ? "local.sh" : "guard");
    std::filesystem::remove_all(out);
    Process job("SWITCHYARD_FAULT=0:3:hang " +
                    (under_local_sh ? local_sh(train_cmd)
                                    : kBin + " guard -- " + mpirun_command(2) + train_cmd),
                path("log"));
    ASSERT_TRUE(wait_until(120, [&] {
      return read_file(out + "/metrics.jsonl").find("\"step\":2,") != std::string::npos ||
             !job.running();
    })) << job.output();
    const std::vector<pid_t> group = foreground_group(job.pid(), under_local_sh ? 2 : 1);
    const std::vector<pid_t> everything = descendants_of(job.pid());
    for (pid_t p : group) ::kill(p, SIGINT);
    ::sleep(2);
    EXPECT_TRUE(job.running()) << "one Ctrl-C waits for the checkpoint\n" << job.output();
    for (pid_t p : group) ::kill(p, SIGINT);
    const int code = job.wait(30);
    const std::string log = job.output();
    EXPECT_NE(code, -1) << "the second Ctrl-C did not end it\n" << log;
    EXPECT_NE(log.find("Ctrl-C again: killing"), std::string::npos) << log;
    // Gone, or a zombie waiting for whoever inherited it to reap it (SIGKILL has ended it).
    const auto running = [](pid_t p) {
      const std::string stat = read_file("/proc/" + std::to_string(p) + "/stat");
      const size_t close = stat.rfind(')');
      return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
    };
    for (pid_t p : everything)
      EXPECT_TRUE(wait_until(10, [&] { return !running(p); })) << "process " << p << " still runs\n"
                                                               << log;
  }
}

// jobs/local.sh (the guard in a script's background, where SIGINT is ignored): Ctrl-C reaches
// the script, which passes it on; it waits for the ranks' checkpoint and exits 75 saying how to
// resume. Before, it exited 130 at once and the run went on behind the user's prompt.
// The SIGUSR1 jobs/local.sh's first line tells the user to send, sent as soon as it is printed:
// the script passes it on and the run stops (76 before training, 75 after), nothing left
// running. The line came before the traps: the script died of it (138) and the run went on.
// That window is a few milliseconds, so the order is also read from bash's trace (-x): the USR1
// trap is set before the line is echoed.
TEST_F(FaultTest, TheStopLocalShAdvertisesWorksFromItsFirstLine) {
  const std::string out = path("run");
  Process job(local_sh(train(out, 100000, "--set checkpoint.every=0"), kBin, "bash -x"),
              path("log"));
  ASSERT_TRUE(advertised_its_stop(job)) << job.output();
  ::kill(job.pid(), SIGUSR1);
  const std::vector<pid_t> below = descendants_of(job.pid());
  const int code = job.wait(120);
  const std::string log = job.output();
  EXPECT_TRUE(code == 75 || code == 76) << code << "\n" << log;
  const size_t trap = log.find(" USR1\n"), echo = log.find("+ echo 'local.sh (pid");
  ASSERT_NE(echo, std::string::npos) << log;
  EXPECT_LT(trap, echo) << "the USR1 trap is set after the line that advertises it\n" << log;
  // The traps come first of all: a stop during the script's own start (cd, the arguments,
  // nproc) killed it (QA: 5 of 8 stops in its first 10 ms).
  EXPECT_LT(log.find("+ trap "), log.find("+ cd ")) << "a command runs before the traps\n" << log;
  for (pid_t p : below) EXPECT_NE(::kill(p, 0), 0) << "process " << p << " still runs\n" << log;
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

// A stop that reaches `switchyard guard` while its libraries initialize is passed on once the
// launcher runs: the guard took its signals in run_guarded, after them, and died of it (138).
TEST_F(FaultTest, AStopWhileTheGuardsLibrariesLoadIsPassedOn) {
  const std::string launcher = path("launcher.sh");
  std::ofstream(launcher) << "trap 'exit 75' USR1\n"
                             "while :; do (trap '' USR1; exec sleep 0.1); done\n";
  Process job("LD_PRELOAD=" + std::string(SWITCHYARD_RAISE_USR1_LIB) + " " + kBin +
                  " guard -- sh " + launcher,
              path("log"));
  EXPECT_EQ(job.wait(30), 75) << job.output();
  EXPECT_NE(job.output().find("passing it on as SIGUSR1"), std::string::npos) << job.output();
}

// jobs/local.sh passes a stop on to the guard once it is the guard: the process it started shows
// the script's own traps until it has exec'd (here a wrapper that keeps them for a second), and
// the stop went to it there: lost, the run trained to its end (exit 0), or 143 when it came just
// after the exec.
TEST_F(FaultTest, LocalShPassesAStopOnlyToTheGuardItself) {
  const std::string out = path("run"), wrapper = path("sy.sh");
  std::ofstream(wrapper) << "#!/bin/bash\n"
                            "if [ \"$1\" = guard ]; then trap : USR1 TERM; sleep 1; fi\n"
                            "exec "
                         << kBin << " \"$@\"\n";
  std::filesystem::permissions(wrapper, std::filesystem::perms::owner_all);
  Process job(local_sh(train(out, 100000, "--set checkpoint.every=0"), wrapper), path("log"));
  ASSERT_TRUE(advertised_its_stop(job)) << job.output();
  ::kill(job.pid(), SIGUSR1);
  const int code = job.wait(120);
  EXPECT_TRUE(code == 75 || code == 76) << code << "\n" << job.output();
}

TEST_F(FaultTest, CtrlCToLocalShWaitsForTheCheckpointAndExits75) {
  const std::string out = path("run");
  Process job(local_sh(train(out, 100000, "--set checkpoint.every=0")), path("log"));
  ASSERT_TRUE(trained_a_few_steps(job, out)) << job.output();
  // A terminal's Ctrl-C goes to the whole foreground group: the script, guard and mpirun.
  const std::vector<pid_t> group = foreground_group(job.pid(), 2);
  for (pid_t p : group) ::kill(p, SIGINT);
  const int code = job.wait(120);
  const std::string log = job.output();
  EXPECT_EQ(code, 75) << log;
  EXPECT_NE(log.find("run the same command again to resume"), std::string::npos) << log;
  EXPECT_FALSE(latest_of(out + "/checkpoints").empty()) << log;
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
