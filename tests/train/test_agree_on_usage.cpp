// agree_on_usage (src/train/loop_common.h), the start-up checks every rank runs: where every rank
// fails, rank 0 alone says why; where one rank fails alone (its GPU, its memory), that rank says
// why, naming itself. The rank that says why is the only one with a non-zero exit code (exit 2);
// the others leave quietly with 0, so that mpirun cannot end the job before the message is out.
// Run in test_train's np=8 instance.
#include <gtest/gtest.h>

#include <string>

#include "comm/mpi.h"
#include "common/mpi_util.h"
#include "src/core/error.h"
#include "src/train/loop_common.h"

namespace sy {
namespace {

struct Outcome {
  bool threw = false, quiet = false;
  int code = -1;
  std::string what;
};

Outcome agree(const comm::Comm& world, bool fail_here, const std::string& why) {
  Outcome o;
  try {
    agree_on_usage(world, nullptr, [&] {
      if (fail_here) throw UsageError(why);
    });
  } catch (const Error& e) {
    o.threw = true;
    o.quiet = e.quiet();
    o.code = e.code();
    o.what = e.what();
  }
  return o;
}

// On rank `reporter`: the UsageError `what` (exit 2); on every other rank a quiet exit 0.
void expect_reported_by(const Outcome& o, int me, int reporter, const std::string& what) {
  EXPECT_TRUE(o.threw) << "rank " << me;
  if (me == reporter) {
    EXPECT_FALSE(o.quiet);
    EXPECT_EQ(o.code, kExitUsage);
    EXPECT_EQ(o.what, what);
  } else {
    EXPECT_TRUE(o.quiet) << "rank " << me << ": " << o.what;
    EXPECT_EQ(o.code, kExitOk) << "rank " << me;
  }
}

TEST(AgreeOnUsage, OneMessageWhenAllFailAndTheFailingRanksOwnWhenOneFails) {
  const comm::Comm world(MPI_COMM_WORLD);
  const int me = world.rank();
  if (world.size() < 3) GTEST_SKIP() << "needs 3 ranks or more (the np=8 instance)";

  // Every rank fails alike: rank 0 reports and exits 2, the others are quiet and exit 0.
  expect_reported_by(agree(world, true, "bad key"), me, 0, "bad key");

  // Ranks 2 and 1 fail alone: rank 1, the first, reports its own reason naming itself and exits
  // 2; everyone else (rank 0, and rank 2 too) is quiet and exits 0.
  expect_reported_by(
      agree(world, me == 1 || me == 2, "no usable GPU on rank " + std::to_string(me)), me, 1,
      "rank 1: no usable GPU on rank 1");

  // Nobody fails: nobody throws.
  EXPECT_FALSE(agree(world, false, "").threw);
}

}  // namespace
}  // namespace sy
