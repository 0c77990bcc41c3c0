// MPI-aware GoogleTest main of every multi-rank test executable (sy_mpi_gtest: run by CTest under
// mpirun at several rank counts).
//
// - Rank 0 prints the usual gtest report; the other ranks print only their failures, prefixed
//   with the rank, so a failure on any rank is visible.
// - The exit code is non-zero on every rank when a test failed on any rank.
// - A watchdog is armed around each test: a rank stuck in a collective (because another rank left
//   a test early) aborts the job and names the test, instead of hanging until CTest's timeout.
//   SY_TEST_TIMEOUT_S overrides the 120 s default (0 disables).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "comm/mpi.h"
#include "comm/watchdog.h"

namespace {

class FailurePrinter : public testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                 result.file_name() ? result.file_name() : "?", result.line_number(),
                 result.message());
    std::fflush(stderr);
  }

 private:
  int rank_;
};

class HangGuard : public testing::EmptyTestEventListener {
 public:
  explicit HangGuard(sy::comm::Watchdog& watchdog) : watchdog_(watchdog) {}
  void OnTestStart(const testing::TestInfo& info) override {
    watchdog_.arm(std::string("test ") + info.test_suite_name() + "." + info.name() +
                  " to finish (another rank may have left a collective early)");
  }
  void OnTestEnd(const testing::TestInfo&) override { watchdog_.disarm(); }

 private:
  sy::comm::Watchdog& watchdog_;
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);

  const char* timeout_env = std::getenv("SY_TEST_TIMEOUT_S");
  const double timeout_s = timeout_env ? std::atof(timeout_env) : 120.0;
  int failed = 0;
  {
    sy::comm::Watchdog watchdog(timeout_s);
    testing::TestEventListeners& listeners = testing::UnitTest::GetInstance()->listeners();
    if (rank != 0) {
      // Release hands the default printer back to us; the unique_ptr deletes it.
      std::unique_ptr<testing::TestEventListener> printer(
          listeners.Release(listeners.default_result_printer()));
      listeners.Append(std::make_unique<FailurePrinter>(rank).release());  // gtest owns it
    }
    listeners.Append(std::make_unique<HangGuard>(watchdog).release());
    failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  }
  if (rank == 0 && failed) std::fprintf(stderr, "%s: a test failed on some rank\n", argv[0]);
  MPI_Finalize();
  return failed;
}
