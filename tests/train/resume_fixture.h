// The fixture of the one-process resume tests (test_resume.cpp, and test_resume_outputs.cpp for
// the files a run keeps beside its checkpoints): a token file in a temporary directory and the
// `switchyard train` command line of tiny.yaml for 20 steps, run as a user starts it.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "common/mpi_util.h"
#include "common/run_command.h"
#include "common/temp_dir.h"

namespace sy::test {

// The switchyard binary as a user starts it: outside this test's mpirun job, whose OMPI_*/PMIX_*
// environment would make its MPI_Init try to join this job.
inline CommandResult run_as_user(const std::string& cmd) {
  return run_command(
      "env -i PATH=\"$PATH\" HOME=\"$HOME\" OPENBLAS_CORETYPE=Haswell "
      "OMP_NUM_THREADS=1 bash -c '" +
      cmd + "'");
}

class Resume : public ::testing::Test {
 protected:
  void SetUp() override {
    if (world_size() != 1) GTEST_SKIP() << "the one-process resume tests run in the np=1 instance";
    std::ofstream t(dir_.file("t.txt"));
    for (int i = 0; i < 600; ++i) t << "pack my box with five dozen liquor jugs, " << i << "\n";
    t.close();
    const auto r = run_as_user(std::string(SWITCHYARD_BIN) + " data prepare --input " +
                               dir_.file("t.txt") + " --output " + dir_.file("t.h5"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  std::string train_cmd(const std::string& run, const std::string& extra = "") {
    return std::string(SWITCHYARD_BIN) + " train --config " + SWITCHYARD_SOURCE_DIR +
           "/configs/tiny.yaml --set data.path=" + dir_.file("t.h5") +
           " --set run.out_dir=" + dir_.file(run) +
           " --set train.steps=20 --set checkpoint.every=10 --set log.every=1"
           " --set eval.every=5 --set eval.sequences=4 " +
           extra;
  }

  // `train` (a train_cmd) hung at the start of step `hang_at` (SWITCHYARD_FAULT) and SIGKILLed
  // once `file` holds `pattern`: its result (exit 137 when the kill came).
  CommandResult kill_when(const std::string& train, int hang_at, const std::string& file,
                          const std::string& pattern) {
    return run_as_user(
        "SWITCHYARD_FAULT=0:" + std::to_string(hang_at) + ":hang " + train +
        " & pid=$!; for i in $(seq 600); do grep -q " + pattern + " " + file +
        " 2>/dev/null && break; sleep 0.05; done; sleep 0.3; kill -9 $pid; wait $pid");
  }

  // Runs `extra` straight for 20 steps, and again SIGKILLed after its step-10 checkpoint and
  // resumed with --resume auto: the metrics of steps 11-20 and the final checkpoint must be the
  // uninterrupted run's, bit for bit. `resume_env` (e.g. "OMP_NUM_THREADS=3") is set for the
  // resumed run only.
  void expect_bitwise_resume(const std::string& extra, const std::string& resume_env = "");
  std::string expect_coactivation_after_a_kill(const std::string& every, int hang_at,
                                               const std::string& file, const std::string& pattern);
  TempDir dir_;
};

}  // namespace sy::test
