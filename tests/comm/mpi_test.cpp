// MPI_CHECK and the Comm owner.
#include "comm/mpi.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <utility>

#include "common/mpi_util.h"

namespace {

using sy::comm::Comm;

TEST(Mpi, CheckThrowsWithCallFileRankAndMpiMessage) {
  Comm comm = Comm::dup(MPI_COMM_WORLD);
  int value = 0;
  std::string message;
  try {
    // An out-of-range root fails MPI's argument check on every rank, before any communication.
    MPI_CHECK(MPI_Bcast(&value, 1, MPI_INT, comm.size(), comm.get()));
  } catch (const std::runtime_error& e) {
    message = e.what();
  }
  ASSERT_FALSE(message.empty()) << "MPI_CHECK did not throw";
  EXPECT_NE(message.find("MPI_Bcast(&value, 1, MPI_INT, comm.size(), comm.get())"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("mpi_test.cpp:"), std::string::npos) << message;
  EXPECT_NE(message.find("rank " + std::to_string(sy::test::world_rank()) + ":"), std::string::npos)
      << message;
  EXPECT_NE(message.find(sy::comm::mpi_error_string(MPI_ERR_ROOT)), std::string::npos) << message;
  EXPECT_EQ(MPI_Barrier(comm.get()), MPI_SUCCESS);
}

TEST(Mpi, CommOwnsSplitsAndMoves) {
  const int W = sy::test::world_size(), me = sy::test::world_rank();
  Comm half = Comm::split(MPI_COMM_WORLD, me % 2, me);
  EXPECT_EQ(half.size(), (W + 1 - me % 2) / 2);
  EXPECT_EQ(half.rank(), me / 2);

  Comm moved(std::move(half));
  EXPECT_TRUE(half.is_null());  // NOLINT(bugprone-use-after-move): the moved-from state is API
  EXPECT_EQ(half.size(), 0);
  EXPECT_EQ(moved.rank(), me / 2);
  int sum = 0, one = 1;
  MPI_CHECK(MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, moved.get()));
  EXPECT_EQ(sum, moved.size());

  Comm assigned;
  assigned = std::move(moved);
  EXPECT_TRUE(moved.is_null());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(assigned.size(), (W + 1 - me % 2) / 2);

  // Only rank 0 takes part: the others get a null communicator.
  Comm only_zero = Comm::split(MPI_COMM_WORLD, me == 0 ? 0 : MPI_UNDEFINED, 0);
  EXPECT_EQ(only_zero.is_null(), me != 0);

  // Wrapping world does not own it: world stays usable after the wrapper is gone.
  {
    Comm world(MPI_COMM_WORLD);
    EXPECT_EQ(world.size(), W);
  }
  EXPECT_EQ(MPI_Barrier(MPI_COMM_WORLD), MPI_SUCCESS);
}

// A borrowed communicator is the caller's: the view neither frees it (nor does a view it was
// moved into) nor changes its error handler.
TEST(Mpi, BorrowedCommIsNotFreed) {
  MPI_Comm mine = MPI_COMM_NULL;
  MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &mine));
  MPI_CHECK(MPI_Comm_set_errhandler(mine, MPI_ERRORS_ARE_FATAL));
  {
    Comm view = Comm::borrow(mine);
    EXPECT_EQ(view.size(), sy::test::world_size());
    EXPECT_EQ(view.rank(), sy::test::world_rank());
    Comm moved(std::move(view));
    EXPECT_EQ(moved.get(), mine);
  }
  MPI_Errhandler handler = MPI_ERRHANDLER_NULL;
  ASSERT_EQ(MPI_Comm_get_errhandler(mine, &handler), MPI_SUCCESS);  // fatal if `mine` was freed
  EXPECT_EQ(handler, MPI_ERRORS_ARE_FATAL);
  MPI_Errhandler_free(&handler);
  EXPECT_EQ(MPI_Barrier(mine), MPI_SUCCESS);
  EXPECT_EQ(MPI_Comm_free(&mine), MPI_SUCCESS);
  EXPECT_TRUE(Comm::borrow(MPI_COMM_NULL).is_null());
}

}  // namespace
