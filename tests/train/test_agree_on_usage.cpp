// agree_on_usage (src/train/loop_common.h), the start-up checks every rank runs: where every rank
// fails, rank 0 alone says why; where one rank fails alone (its GPU, its memory), that rank says
// why, naming itself, and rank 0 names it. Run in test_train's np=8 instance.
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
  std::string what;
};

Outcome agree(const comm::Comm& world, bool fail_here, const std::string& why) {
  Outcome o;
  try {
    agree_on_usage(world, nullptr, [&] {
      if (fail_here) throw UsageError(why);
    });
  } catch (const UsageError& e) {
    o.threw = true;
    o.quiet = e.quiet();
    o.what = e.what();
  }
  return o;
}

TEST(AgreeOnUsage, OneMessageWhenAllFailAndTheFailingRanksOwnWhenOneFails) {
  const comm::Comm world(MPI_COMM_WORLD);
  const int me = world.rank();
  if (world.size() < 3) GTEST_SKIP() << "needs 3 ranks or more (the np=8 instance)";

  // Every rank fails alike: rank 0 reports, the others are quiet.
  Outcome o = agree(world, true, "bad key");
  EXPECT_TRUE(o.threw);
  EXPECT_EQ(o.quiet, me != 0) << "rank " << me;
  EXPECT_EQ(o.what, "bad key");

  // Ranks 2 and 1 fail alone: rank 1, the first, reports its own reason naming itself; rank 0
  // names rank 1; everyone else (rank 2 too) is quiet.
  o = agree(world, me == 1 || me == 2, "no usable GPU on rank " + std::to_string(me));
  EXPECT_TRUE(o.threw);
  if (me == 1) {
    EXPECT_FALSE(o.quiet);
    EXPECT_EQ(o.what, "rank 1: no usable GPU on rank 1");
  } else if (me == 0) {
    EXPECT_FALSE(o.quiet);
    EXPECT_EQ(o.what, "rank 1 could not start (its own message says why)");
  } else {
    EXPECT_TRUE(o.quiet) << "rank " << me << ": " << o.what;
  }

  // Nobody fails: nobody throws.
  EXPECT_FALSE(agree(world, false, "").threw);
}

}  // namespace
}  // namespace sy
