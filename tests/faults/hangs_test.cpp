// Issue 15, "every wait bounded": a rank that stops answering during a checkpoint or at the
// per-step stop check ends the job after parallel.timeout_s with a message naming the waiting
// rank and what it waited for (items 1 and 4). Before the fix, the others waited forever in the
// HDF5 collective write, in the checkpoint's agreement collectives or in the stop check.
#include <gtest/gtest.h>

#include "faults/faults_util.h"

namespace sy::test::faults {
namespace {

std::string ckpt_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld.h5", static_cast<long long>(step));
  return buf;
}

struct StopPoint {
  const char* point;   // SWITCHYARD_CKPT_FAULT point (src/train/faults.h)
  const char* waited;  // what the other ranks' watchdog must name
  int64_t latest;      // the newest complete checkpoint before the stop
};

// gtest prints the parameter in test names and failures.
void PrintTo(const StopPoint& p, std::ostream* os) {
  *os << p.point;
}

class StoppedRank : public FaultTest, public ::testing::WithParamInterface<StopPoint> {};

// Rank 1 stops itself (SIGSTOP) at `point` of step 10's checkpoint (or its stop check, which
// follows the checkpoint); step 5's was written before. The job must end after the timeout (10 s,
// as in the trials; generous for a loaded CI machine), exit 1, naming the wait, and
// leave `latest` on a complete checkpoint. (Which one: Open MPI's
// abort sends SIGCONT before it kills, so the stopped rank may run on for a moment and let the
// write it held up complete -- a complete checkpoint is fine, a partial one never is.)
TEST_P(StoppedRank, EndsTheJobNamingTheWait) {
  const StopPoint& p = GetParam();
  const std::string out = path("run");
  Process job("env SWITCHYARD_CKPT_FAULT='1:" + std::string(p.point) + ":stop:10' " +
                  mpirun_command(4) + train(out, 20, "--set parallel.timeout_s=10"),
              path("log"));
  const int code = job.wait(120);
  const std::string log = job.output();
  ASSERT_NE(code, -1) << "the job hung (killed after 120 s):\n" << log;
  EXPECT_EQ(code, 1) << log;
  EXPECT_NE(log.find(": timed out after 10s waiting for"), std::string::npos) << log;
  EXPECT_NE(log.find(p.waited), std::string::npos) << log;
  const std::string latest = latest_of(out + "/checkpoints");
  EXPECT_TRUE(latest == ckpt_name(p.latest) || latest == ckpt_name(10)) << latest;
  EXPECT_EQ(run_command(kBin + " ckpt info " + out + "/checkpoints/" + latest).exit_code, 0);
}

INSTANTIATE_TEST_SUITE_P(
    Points, StoppedRank,
    ::testing::Values(
        // the file is created; the others wait for rank 1 to finish creating it
        StopPoint{"created", "creating the file", 5},
        // mid-write: the others wait in the agreement after a collective dataset write
        StopPoint{"wrote model/layers/0/attn/wqkv", "writing dataset /model/layers/0/attn/wqkv", 5},
        // closed: the others wait to agree on the close
        StopPoint{"closed", "closing the file", 5},
        // after step 10's work, before the stop check all-reduce
        StopPoint{"stop_check", "the per-step stop check", 10}),
    [](const ::testing::TestParamInfo<StopPoint>& param_info) {
      std::string n;
      for (const char* c = param_info.param.point; *c && n.size() < 20; ++c)
        n += std::isalnum(static_cast<unsigned char>(*c)) ? *c : '_';
      return n;
    });

// A SIGSTOP from outside at whatever point rank 2 happens to be in -- with a checkpoint after
// every step it is most likely in or near one. Wherever it lands, the others must not wait
// forever.
TEST_F(FaultTest, RankStoppedFromOutsideDuringCheckpointsEndsTheJob) {
  const std::string out = path("run");
  Process job(mpirun_command(4) +
                  train(out, 100000, "--set checkpoint.every=1 --set parallel.timeout_s=10"),
              path("log"));
  const pid_t victim = job.rank_pid(2);
  ASSERT_GT(victim, 0) << job.output();
  ASSERT_TRUE(wait_until(120, [&] {
    return std::filesystem::exists(out + "/checkpoints/step_00000003.h5") || !job.running();
  })) << job.output();
  ::kill(victim, SIGSTOP);
  const int code = job.wait(120);
  const std::string log = job.output();
  ASSERT_NE(code, -1) << "the job hung (killed after 120 s):\n" << log;
  EXPECT_EQ(code, 1) << log;
  EXPECT_NE(log.find(": timed out after 10s waiting for"), std::string::npos) << log;
  // The stopped rank, woken by Open MPI's SIGCONT before the kill, does not claim a timeout of
  // its own: its watchdog's deadline moved by the time it did not run.
  EXPECT_EQ(log.find("rank 2: timed out"), std::string::npos) << log;
  // Whatever was being written, the newest complete checkpoint still verifies.
  const std::string latest = latest_of(out + "/checkpoints");
  ASSERT_FALSE(latest.empty());
  EXPECT_EQ(run_command(kBin + " ckpt info " + out + "/checkpoints/" + latest).exit_code, 0);
}

// One rank waits for no other: parallel.timeout_s does not bound its own work. A start-up
// longer than the timeout (a 100M-parameter model built on one rank, or a small one under CPU
// load: QA) ended it, exit 1, "timed out after 1s waiting for start-up".
TEST_F(FaultTest, OneRanksSlowStartUpIsNotATimeout) {
  const auto r = run_command(train(path("run"), 0,
                                   "--set parallel.ep=1 --set parallel.timeout_s=1 --set "
                                   "moe.num_experts=256 --set moe.ffn_hidden=2048 --set "
                                   "eval.every=0 --set checkpoint.every=0"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("timed out"), std::string::npos) << r.output;
}

// parallel.timeout_s = 1e10 overflowed the watchdog's clock and fired at once ("timed out after
// 1e+10s"); it is refused naming the key (item 4).
TEST_F(FaultTest, AnOverflowingTimeoutIsRefusedNamingTheKey) {
  const auto r =
      run_command(train(path("run"), 2, "--set parallel.ep=1 --set parallel.timeout_s=1e10"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("parallel.timeout_s"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("timed out"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace sy::test::faults
