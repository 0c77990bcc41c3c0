// A UCX peer that goes away must end in a clear error naming the peer, never in a hang.
//
// PeerThatLeavesIsNamed (any run with >= 2 ranks): world ranks 0 and 1 form an EP group of two
// emulated nodes; after the layout rank 1 destroys its exchange (its UCX endpoints close) and
// rank 0 dispatches into it: rank 0 must get a std::runtime_error naming EP rank 1, quickly.
//
// PeerKilledEndsTheJob (only with SY_TEST_UCX_KILL_PEER=1, run by ucx_peer_killed.sh): rank 1
// SIGKILLs itself between layout and dispatch; rank 0 must fail with the UCX error naming EP
// rank 1 and exit 1. The wrapper checks the exit code, the time bound and the message (mpirun
// runs with orte_enable_recovery so that it does not kill rank 0 before rank 0 notices).
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "comm/alltoall.h"
#include "comm/mpi.h"
#include "comm/ucx.h"
#include "comm/watchdog.h"
#include "common/mpi_util.h"

namespace {

using sy::comm::A2aAlgo;
using sy::comm::ExchangeHandle;
using sy::comm::ExchangeOptions;
using sy::comm::Internode;

// A timeout may be this rank's own stall: a stopped rank, continued, blamed a live peer alone.
TEST(UcxFailure, ATimeoutSaysThisRankMayHaveStalled) {
  const std::string timeout = sy::comm::peer_failure_words(UCS_ERR_ENDPOINT_TIMEOUT);
  EXPECT_NE(timeout.find("gone or unreachable"), std::string::npos) << timeout;
  EXPECT_NE(timeout.find("this rank itself stalled"), std::string::npos) << timeout;
  const std::string reset = sy::comm::peer_failure_words(UCS_ERR_CONNECTION_RESET);
  EXPECT_EQ(reset.find("stalled"), std::string::npos) << reset;
}

// Ranks 0 and 1 of the world as two emulated nodes of one rank each; null on the others.
sy::comm::Comm first_two() {
  const int me = sy::test::world_rank();
  return sy::comm::Comm::split(MPI_COMM_WORLD, me < 2 ? 0 : MPI_UNDEFINED, me);
}

std::unique_ptr<sy::comm::TokenExchange> two_node_exchange(MPI_Comm comm,
                                                           sy::comm::Watchdog* watchdog = nullptr) {
  ExchangeOptions opt;
  opt.watchdog = watchdog;
  opt.ep_comm = comm;
  opt.num_experts = 2;
  opt.node_of_ep_rank = {0, 1};
  opt.algo = A2aAlgo::kHierarchical;
  opt.internode = Internode::kUcx;
  return sy::comm::make_exchange(opt);
}

// Every token to both experts (one per rank): each rank puts to the other.
const std::vector<int32_t> kTopk = {0, 1, 1, 0, 0, 1};

TEST(UcxFailure, PeerThatLeavesIsNamed) {
  if (sy::test::world_size() < 2) GTEST_SKIP() << "needs 2 ranks";
  sy::comm::Comm pair = first_two();
  if (!pair.is_null()) {
    auto ex = two_node_exchange(pair.get());
    ExchangeHandle h;
    ex->layout(kTopk, 3, 2, h);
    const int64_t width = 1024;
    std::vector<float> x(static_cast<size_t>(3 * width), 1.f);
    std::vector<float> recv(static_cast<size_t>(h.num_recv * width));
    ex->dispatch(h, x, recv, width);  // both alive: works
    MPI_Barrier(pair.get());
    if (pair.rank() == 1) {
      ex.reset();  // leaves: endpoints closed, memory unregistered
      MPI_Barrier(pair.get());
    } else {
      MPI_Barrier(pair.get());  // rank 1 is gone from UCX now
      const auto start = std::chrono::steady_clock::now();
      std::string message;
      try {
        ex->dispatch(h, x, recv, width);
      } catch (const std::runtime_error& e) {
        message = e.what();
      }
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      EXPECT_NE(message.find("EP rank 1"), std::string::npos) << "error: '" << message << "'";
      EXPECT_NE(message.find("rank 0"), std::string::npos) << message;
      EXPECT_LT(seconds, 30.0);
      ex.reset();
    }
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST(UcxFailure, PeerKilledEndsTheJob) {
  const char* kill = std::getenv("SY_TEST_UCX_KILL_PEER");
  if (!kill || std::string(kill) != "1") GTEST_SKIP() << "run by ucx_peer_killed.sh";
  ASSERT_GE(sy::test::world_size(), 2);
  sy::comm::Comm pair = first_two();
  if (pair.is_null()) {
    // Bystanders wait; mpirun takes them down with the job.
    MPI_Barrier(MPI_COMM_WORLD);
    return;
  }
  // A wait that no error can end (a blocking MPI call on a dead peer) ends here instead: the
  // default watchdog action prints the wait and calls MPI_Abort.
  sy::comm::Watchdog watchdog(20.0);
  auto ex = two_node_exchange(pair.get(), &watchdog);
  ExchangeHandle h;
  ex->layout(kTopk, 3, 2, h);
  const int64_t width = 1024;
  std::vector<float> x(static_cast<size_t>(3 * width), 1.f);
  std::vector<float> recv(static_cast<size_t>(h.num_recv * width));
  ex->dispatch(h, x, recv, width);  // buffers grown while both are alive
  if (pair.rank() == 1) std::raise(SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  try {
    ex->dispatch(h, x, recv, width);
  } catch (const std::runtime_error& e) {
    // Report and take the job down (MPI_Finalize with a dead peer might never return).
    std::fprintf(stderr, "fatal: %s\n", e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  ADD_FAILURE() << "dispatch to a killed peer returned";
}

}  // namespace
