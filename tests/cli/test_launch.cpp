// `mpirun -np N switchyard train` as a user launches it (issue 3, items 5 and 6): a layout that
// does not fit is one clear message and exit 2 (rank 0 the only rank exiting non-zero); a rank that
// throws or dies mid-run ends the whole job non-zero, promptly, naming the rank and the reason.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <utility>

#include "common/run_command.h"
#include "common/temp_dir.h"
#include "common/tiny_tokens.h"

namespace {

using sy::test::mpirun;
using sy::test::run_command;
const std::string kBin = SWITCHYARD_BIN;
const std::string kSrc = SWITCHYARD_SOURCE_DIR;

class Launch : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto r = sy::test::prepare_tiny_tokens(dir_, kBin);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  std::string train(const std::string& extra) {
    return kBin + " train --config " + kSrc +
           "/configs/tiny.yaml --set data.path=" + dir_.file("t.h5") +
           " --set run.out_dir=" + dir_.file("run") +
           " --set train.micro_batch=1 --set eval.every=0 --set eval.sequences=2 " + extra;
  }
  // 4 ranks on 2 emulated nodes exchanging over UCX, with UCX_TLS=`tls`.
  sy::test::CommandResult train_over_ucx(const std::string& tls) {
    return run_command("UCX_TLS=" + tls + " " + mpirun(4) +
                       train("--set train.steps=2 --set parallel.ep=4 "
                             "--set parallel.ranks_per_node=2 --set parallel.a2a=hierarchical "
                             "--set parallel.internode=ucx --set train.global_batch=4"));
  }
  sy::test::TempDir dir_;
};

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST_F(Launch, LayoutThatDoesNotFitIsOneMessageAndExitTwo) {
  // tp=2 does not divide 3 ranks; ep=3 does not divide 4 experts; route_groups: nodes where
  // the EP groups straddle 3-rank nodes (ranks 0,1 on one node, ranks 2,3 on two); the
  // hierarchical all-to-all on EP groups split unevenly over nodes.
  for (const auto& [np, set, key] :
       {std::tuple{3, std::string("--set parallel.tp=2"), std::string("parallel.tp=2")},
        std::tuple{3, std::string("--set parallel.ep=3"), std::string("moe.num_experts")},
        std::tuple{6,
                   std::string("--set parallel.ep=2 --set parallel.ranks_per_node=3 --set "
                               "train.global_batch=6 --set moe.route_groups=nodes"),
                   std::string("moe.route_groups: nodes")},
        // auto resolves to hierarchical (the EP groups span 2-rank nodes), whose exchange needs
        // equal EP ranks per node: 2 + 1 here. It was refused by the exchange on each rank (six
        // messages; with some groups even, the others waited for the watchdog).
        std::tuple{6,
                   std::string("--set parallel.ep=3 --set moe.num_experts=6 --set "
                               "parallel.ranks_per_node=2 --set train.global_batch=6"),
                   std::string("needs the same number of EP ranks on every node")}}) {
    const auto r = run_command(mpirun(np) + train(set));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_EQ(count(r.output, "error: "), 1u) << "one message, from rank 0:\n" << r.output;
    EXPECT_NE(r.output.find(key), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("step "), std::string::npos) << "no work before the check";
  }
  // Paths aside: a node may see the same data under another path (staged to local scratch), and
  // only rank 0 writes run.out_dir (checkpoint.dir, made from it by default, must still be the
  // directory every rank writes each checkpoint into: ARankReadingOtherData...).
  std::filesystem::copy_file(dir_.file("t.h5"), dir_.file("staged.h5"));
  const std::string each = train("--set train.steps=2");
  const auto r = run_command(mpirun(1) + each + " : -np 1 " + each + " --set data.path=" +
                             dir_.file("staged.h5") + " --set run.out_dir=" + dir_.file("other") +
                             " --set checkpoint.dir=" + dir_.file("run") + "/checkpoints");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

// The validation split's micro-batches shared by more ranks than it fills: 5 windows of 33 tokens
// in micro-batches of 2 are batches {0,1} {2,3} {4} on dp 2 as rank 0's two and rank 1's one and
// an empty one, which asked the loader for windows from 6 on and aborted the job.
TEST_F(Launch, AValidationSplitThatLeavesARankNothingToReadEvaluates) {
  {
    std::ofstream t(dir_.file("short.txt"));
    for (int i = 0; i < 40; ++i) t << "pack my box with five dozen liquor jugs " << i % 10 << "\n";
  }
  ASSERT_EQ(run_command(kBin + " data prepare --input " + dir_.file("short.txt") + " --output " +
                        dir_.file("short.h5"))
                .exit_code,
            0);
  const auto r = run_command(mpirun(2) + kBin + " train --config " + kSrc +
                             "/configs/tiny.yaml --set data.path=" + dir_.file("short.h5") +
                             " --set run.out_dir=" + dir_.file("short") +
                             " --set train.micro_batch=2 --set train.steps=2 --set eval.every=0");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("evaluating on 5"), std::string::npos) << r.output;
}

// Every rank must run rank 0's config. mpirun's multi-program form gives one rank its own --set
// or --resume, as a config file that differs between nodes would: another seed trained from other
// weights (exit 0, no word), other sizes crashed in a collective (heap corruption, 134;
// MPI_ERR_TRUNCATE), another --resume waited for the watchdog (found by QA). Now exit 2 before
// anything, one message from the first rank that differs, naming the key and both values.
TEST_F(Launch, ARankWithAnotherConfigIsRefusedNamingTheKey) {
  for (const auto& [extra, says] :
       {std::pair{std::string("--set run.seed=7"), std::string("run.seed is '7' here and '1234'")},
        std::pair{std::string("--set moe.num_experts=8 --set parallel.ep=2"),
                  std::string("moe.num_experts is '8' here and '4' on rank 0")},
        std::pair{std::string("--resume auto"), std::string("--resume is 'auto' here")}}) {
    const std::string each = train("--set train.steps=2");
    const auto r = run_command(mpirun(1) + each + " : -np 1 " + each + " " + extra);
    EXPECT_EQ(r.exit_code, 2) << extra << "\n" << r.output;
    EXPECT_EQ(count(r.output, "error: "), 1u) << r.output;
    EXPECT_NE(r.output.find("error: rank 1: this rank does not run rank 0's config: " + says),
              std::string::npos)
        << r.output;
    EXPECT_EQ(r.output.find("step "), std::string::npos) << "no work before the check";
  }
}

// A rank that does not come to MPI_Init (a node stalled at start: here, rank 1 sleeps first) held
// the others in it without bound: parallel.timeout_s covered only what came after (found by QA,
// a rank stopped in its first 0.1 s). Now rank 0 leaves after the timeout, naming the wait.
TEST_F(Launch, ARankThatNeverStartsEndsTheJobAfterTheTimeout) {
  const std::string each = train("--set train.steps=2 --set parallel.timeout_s=3");
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = run_command(mpirun(1) + each + " : -np 1 sh -c 'sleep 60; exec " + each + "'");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("rank 0: timed out after 3s waiting for MPI start-up"), std::string::npos)
      << r.output;
  EXPECT_LT(seconds, 40) << r.output;
}

// A FIFO as the config of a job of several ranks, each of which reads it: one rank got the text
// and the others waited in open(2) until the start-up's timeout ("waiting for MPI start-up", not
// a word of the config; review). Refused at once, naming the file; one process alone still
// reads it (test_input's TextFile test).
TEST_F(Launch, AFifoAsTheConfigOfSeveralRanksIsRefused) {
  const std::string fifo = dir_.file("cfg.fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const auto t0 = std::chrono::steady_clock::now();
  const auto r =
      run_command("(timeout 20 sh -c 'cat " + kSrc + "/configs/tiny.yaml > " + fifo +
                  "' </dev/null >/dev/null 2>&1 &); " + mpirun(2) + kBin + " train --config " +
                  fifo + " --set data.path=" + dir_.file("t.h5") +
                  " --set run.out_dir=" + dir_.file("run") + " --set parallel.timeout_s=30");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("config file '" + fifo +
                          "' is a FIFO, expected a YAML file (a regular "
                          "file)"),
            std::string::npos)
      << r.output;
  EXPECT_LT(seconds, 15) << r.output;
}

// UCX without a transport that reports failed peers between nodes (UCX_TLS=sm,self): the job
// ends naming the cure ("Destination is unreachable" and a file:line before).
TEST_F(Launch, AUcxWithoutANetworkTransportSaysWhatToSet) {
  const auto r = train_over_ucx("sm,self");
  EXPECT_NE(r.exit_code, 0) << r.output;
  // The peer as every other UCX message names it (it said "rank 1 ... node peer 0": indices in
  // the node-peer communicator, not the job's ranks).
  EXPECT_NE(r.output.find("UCX cannot reach EP rank "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("(world rank "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("set parallel.internode=mpi"), std::string::npos) << r.output;
}

// UCX that cannot start at all (UCX_TLS naming a transport this host lacks: "No such device"
// from ucp_init and a file:line, on every rank): the error names the key and the way around it.
TEST_F(Launch, AUcxThatCannotStartNamesTheKey) {
  const auto r = train_over_ucx("rc_verbs");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("UCX could not start for parallel.internode=ucx"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("or set parallel.internode=mpi"), std::string::npos) << r.output;
}

// `cmd` inside a shell that prints "rank R exit C" after it; a rank that exits non-zero waits 3 s
// first, so that mpirun's end of the job does not cut the other ranks' lines.
std::string saying_its_exit(const std::string& cmd) {
  return " bash -c '" + cmd +
         "; rc=$?; echo \"rank $OMPI_COMM_WORLD_RANK exit $rc\"; "
         "[ $rc = 0 ] || sleep 3; exit $rc'";
}

// An error every rank finds alike is rank 0's to report, and rank 0 is then the only rank that
// exits non-zero. mpirun ends a job at the first non-zero exit and kills the other ranks, so a
// rank 1 exiting 2 first killed rank 0 before its message was out: under load about one run in
// twenty ended with exit 2 and no message (the test above caught it). Each rank prints its own
// exit code here: a config error and a layout error.
TEST_F(Launch, AnErrorRankZeroReportsLeavesRankZeroTheOnlyNonZeroExit) {
  for (const std::string& set :
       {std::string("--set moe.nonsense=1"), std::string("--set parallel.tp=2")}) {
    const auto r = run_command(mpirun(3) + saying_its_exit(train(set)));
    EXPECT_EQ(r.exit_code, 2) << set << ": " << r.output;
    EXPECT_EQ(count(r.output, "error: "), 1u) << set << ": " << r.output;
    for (const char* exit : {"rank 0 exit 2", "rank 1 exit 0", "rank 2 exit 0"})
      EXPECT_NE(r.output.find(exit), std::string::npos) << set << ": " << r.output;
  }
}

// A config error on one rank only (here an MPMD launch whose second command line differs; in
// practice a node's own copy of the config): that rank says why, naming itself, and is the only
// non-zero exit; the job ends at once. It hung when every rank checked its config before MPI
// started and a rank without an error waited in MPI_Init for one that had left.
TEST_F(Launch, AConfigErrorOnOneRankIsThatRanksMessageAndEndsTheJob) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = run_command("OMP_NUM_THREADS=1 timeout 60 " + sy::test::mpirun_command(1) +
                             saying_its_exit(train("")) + " : -np 1" +
                             saying_its_exit(train("--set moe.nonsense=1")));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_LT(s, 50.0) << r.output;
  EXPECT_EQ(count(r.output, "error: "), 1u) << r.output;
  EXPECT_NE(r.output.find("error: rank 1: --set moe.nonsense=1: moe.nonsense: unknown key"),
            std::string::npos)
      << r.output;
  for (const char* exit : {"rank 0 exit 0", "rank 1 exit 2"})
    EXPECT_NE(r.output.find(exit), std::string::npos) << r.output;
}

TEST_F(Launch, RankThatThrowsEndsTheJobNamingIt) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = run_command("SWITCHYARD_FAULT=1:3:throw " + mpirun(2) +
                             train("--set train.steps=50 --set parallel.ep=2"));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("rank 1: fatal: injected fault"), std::string::npos) << r.output;
  EXPECT_LT(s, 60.0) << "the job must end promptly, not at the watchdog's 300 s";
}

TEST_F(Launch, RankThatDiesEndsTheJob) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = run_command("SWITCHYARD_FAULT=0:2:exit " + mpirun(2) +
                             train("--set train.steps=50 --set parallel.ep=2"));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_LT(s, 60.0) << r.output;
}

TEST_F(Launch, WatchdogEndsAJobWhoseRankStopsTalking) {
  // Rank 1 hangs (alive, silent) at the start of step 2 while rank 0 waits in the step's first
  // collective: only rank 0's watchdog can end this, after parallel.timeout_s.
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = run_command("SWITCHYARD_FAULT=1:2:hang " + mpirun(2) +
                             train("--set train.steps=50 --set parallel.timeout_s=3"));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("rank 0: timed out after"), std::string::npos) << r.output;
  EXPECT_GE(s, 3.0) << r.output;
  EXPECT_LT(s, 60.0) << r.output;
}

// device: cuda has data, tensor and expert parallelism but does not split the experts: an etp
// layout (or ZeRO-1, or an expert placement file, which it would ignore, or a top-k past its
// router's) is one message naming the key and exit 2 on every rank, before any GPU is looked for --
// the same in a build with or without the CUDA backend, and on a machine without a GPU.
TEST_F(Launch, DeviceCudaExpertTensorParallelIsRefusedNamingTheKey) {
  for (const auto& [set, key] :
       {std::pair{std::string("--set parallel.etp=2"), std::string("parallel.etp=2")},
        std::pair{std::string("--set parallel.zero1=true"), std::string("parallel.zero1")},
        std::pair{std::string("--set parallel.expert_placement=absent.yaml"),
                  std::string("parallel.expert_placement=absent.yaml")},
        // The GPU router's limit: it failed after NCCL's set-up and the data, exit 1.
        std::pair{std::string("--set moe.num_experts=32 --set moe.top_k=17"),
                  std::string("moe.top_k=17")}}) {
    const auto r = run_command(mpirun(2) + train("--set device=cuda " + set));
    EXPECT_EQ(r.exit_code, 2) << set << "\n" << r.output;
    EXPECT_EQ(count(r.output, "error: "), 1u) << "one message, from rank 0:\n" << r.output;
    EXPECT_NE(r.output.find(key), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("device: cuda"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("step "), std::string::npos) << "no work before the check";
  }
}

// What each rank reads from its own path, which the same-config check leaves aside: a token file
// that differs on one rank (another text, or the same sizes with other content) trained other
// batches than the log named, exit 0; so did two expert placement files that differ; a
// checkpoint.dir that is not the directory rank 0 made
// (node-local, unmounted) trained until the first checkpoint and then hung for
// parallel.timeout_s. Both are one message and exit 2 before any step; a copy of the same file
// under another path still trains (LayoutThatDoesNotFitIsOneMessageAndExitTwo).
TEST_F(Launch, ARankReadingOtherDataOrAnotherCheckpointDirIsRefused) {
  {
    std::ofstream t(dir_.file("other.txt"));
    for (int i = 0; i < 400; ++i) t << "the quick brown fox jumps over the lazy cat " << i << "\n";
  }
  ASSERT_EQ(run_command(kBin + " data prepare --input " + dir_.file("other.txt") + " --output " +
                        dir_.file("other.h5"))
                .exit_code,
            0);
  const std::string each = train("--set train.steps=2 --set checkpoint.every=1");
  for (const auto& [rank1, key] :
       {std::pair{std::string(" --set data.path=") + dir_.file("other.h5"),
                  std::string("data.path: this rank's token file")},
        std::pair{std::string(" --set checkpoint.dir=") + dir_.file("elsewhere"),
                  std::string("checkpoint.dir '") + dir_.file("elsewhere") +
                      "' is not rank 0's directory here"}}) {
    const auto r = run_command(mpirun(1) + each + " : -np 1 " + each + rank1 +
                               " --set run.out_dir=" + dir_.file("other-run"));
    EXPECT_EQ(r.exit_code, 2) << rank1 << "\n" << r.output;
    EXPECT_EQ(count(r.output, "error: "), 1u) << "one message:\n" << r.output;
    EXPECT_NE(r.output.find(key), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("rank 1"), std::string::npos) << "names the rank:\n" << r.output;
    EXPECT_EQ(r.output.find("step "), std::string::npos) << "no work before the check";
  }
  // Two expert placement files that differ (a copy edited on one node) routed by other tables.
  const std::string head =
      "format: switchyard-expert-placement\nversion: 1\nnum_experts: 4\nep: 2\n";
  std::ofstream(dir_.file("p0.yaml"))
      << head << "layers:\n  - [[0, 1], [2, 3]]\n  - [[0, 1], [2, 3]]\n";
  std::ofstream(dir_.file("p1.yaml"))
      << head << "layers:\n  - [[0, 2], [1, 3]]\n  - [[0, 1], [2, 3]]\n";
  const std::string ep2 = each + " --set parallel.ep=2 --set parallel.expert_placement=";
  const auto r = run_command(mpirun(1) + ep2 + dir_.file("p0.yaml") + " : -np 1 " + ep2 +
                             dir_.file("p1.yaml"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_EQ(count(r.output, "error: "), 1u) << "one message:\n" << r.output;
  EXPECT_NE(r.output.find("rank 1: parallel.expert_placement: this rank's placement ('" +
                          dir_.file("p1.yaml") + "') is not rank 0's (another table)"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("step "), std::string::npos) << "no work before the check";
}

// Rank 0 draws the evaluation sample alone; the other ranks waited in their next collective under
// the watchdog, so a sample longer than parallel.timeout_s (eval.sample_tokens may be 100000)
// ended a healthy run with exit 1 and no final checkpoint. Here 100000 tokens of tiny.yaml
// (about 3 s on an idle core) against a 1 s timeout.
TEST_F(Launch, ALongEvaluationSampleOnRankZeroIsNotATimeout) {
  const auto r =
      run_command(mpirun(2) + train("--set train.steps=1 --set eval.sample_tokens=100000 "
                                    "--set parallel.timeout_s=1"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("timed out"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("sample at step 1"), std::string::npos) << r.output;
}

TEST_F(Launch, TwoRanksTrainAndReportTheLayout) {
  const auto r = run_command(mpirun(2) + train("--set train.steps=2 --set parallel.ep=2"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("layout: world=2 dp=2 tp=1 | edp=1 ep=2 etp=1"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("rank 1: dp=1 tp=0 | edp=0 ep=1 etp=0"), std::string::npos);
  EXPECT_EQ(count(r.output, "step      2/2"), 1u) << "rank 0 alone prints progress";
}

// A run's binary may be upgraded between the jobs of one run (a requeue picks up the new build):
// --version said "switchyard 0.1.0" for builds 90 commits apart and no log said which build
// wrote which steps (QA). Both name the commit the build is of.
TEST_F(Launch, VersionAndTheRunsLogNameTheBuildsCommit) {
  const auto v = run_command(kBin + " --version");
  ASSERT_EQ(v.exit_code, 0) << v.output;
  const std::regex form(R"(switchyard 0\.1\.0 \(commit ([0-9a-f]{12}(-dirty)?|unknown)\)\n)");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(v.output, m, form)) << v.output;
  if (std::filesystem::exists(kSrc + "/.git")) {
    EXPECT_NE(m[1], "unknown") << v.output;
  }
  // In a run directory an earlier run wrote to: the notes of its files come after that line.
  std::filesystem::create_directories(dir_.file("run"));
  std::ofstream(dir_.file("run/metrics.jsonl")) << "{\"step\": 1}\n";
  std::ofstream(dir_.file("run/samples.txt"))
      << "sample at step 1 (the first 1 validation tokens, then 1 generated):\nab\n\n";
  const auto r = run_command(train("--set train.steps=1"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("samples.txt.prev"), std::string::npos) << r.output;
  const std::string id = v.output.substr(0, v.output.size() - 1);
  EXPECT_EQ(r.output.rfind(id + ": run 'tiny' -> ", 0), 0u) << r.output;
}

// OpenBLAS's kernel decides how a product's sums round, so a run (or a resume) on another kernel
// is not bitwise the same (QA: Haswell against OpenBLAS's own pick differed from step 1, by 6.9e-7
// over 30 steps); nothing in the log said which one ran. The run's header names it.
TEST_F(Launch, TheLogNamesTheBlasKernelThatRoundsTheProducts) {
  // An OpenBLAS built for one CPU has that kernel alone and ignores OPENBLAS_CORETYPE.
  const auto own = run_command(train("--set train.steps=1"));
  ASSERT_EQ(own.exit_code, 0) << own.output;
  const size_t line = own.output.find("cpu gemm: OpenBLAS ");
  ASSERT_NE(line, std::string::npos) << own.output;
  if (own.output.substr(line, own.output.find('\n', line) - line).find("DYNAMIC_ARCH") ==
      std::string::npos)
    GTEST_SKIP() << "this OpenBLAS is not built with DYNAMIC_ARCH: one kernel";
  for (const char* kernel : {"Sandybridge", "Nehalem"}) {
    const auto r = run_command("OPENBLAS_CORETYPE=" + std::string(kernel) + " " +
                               train("--set train.steps=1"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find(std::string(", kernel ") + kernel + "\n"), std::string::npos)
        << r.output;
  }
}

}  // namespace
