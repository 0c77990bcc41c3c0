// NodeBarrier and SharedWindow::sync_barrier: every store a rank makes before a barrier is seen by
// every node-mate after it, call after call, with ranks arriving in a different, uneven order
// each time (a barrier that lets a rank through early shows up as a stale value).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "comm/mpi.h"
#include "comm/shm_window.h"
#include "common/mpi_util.h"

namespace {

TEST(NodeBarrier, EveryStoreBeforeItIsSeenAfterIt) {
  // All ranks of the world on one host: one node communicator.
  sy::comm::Comm node = sy::comm::Comm::split(MPI_COMM_WORLD, 0, sy::test::world_rank());
  const int R = node.size(), me = node.rank();
  sy::comm::NodeBarrier barrier(node.get());
  sy::comm::SharedWindow window(node.get(), 2 * sizeof(int64_t));
  std::mt19937 rng(1234u + static_cast<unsigned>(me));
  std::uniform_int_distribution<int> delay_us(0, 300);

  constexpr int kRounds = 200;
  int64_t stale = 0;
  for (int round = 1; round <= kRounds; ++round) {
    // Write this round's value into slot round % 2 (the other slot still holds the last round's,
    // which node-mates may be reading until the second barrier below).
    const int64_t value = int64_t{round} * 1000 + me;
    auto* mine = reinterpret_cast<int64_t*>(window.mine());
    if (delay_us(rng) > 200) std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
    std::memcpy(&mine[round % 2], &value, sizeof(value));
    window.sync_barrier(barrier, nullptr, "test: after the writes");
    for (int r = 0; r < R; ++r) {
      int64_t seen = 0;
      std::memcpy(&seen, reinterpret_cast<const int64_t*>(window.segment(r)) + round % 2,
                  sizeof(seen));
      if (seen != int64_t{round} * 1000 + r) ++stale;
    }
    if (delay_us(rng) > 250) std::this_thread::sleep_for(std::chrono::microseconds(delay_us(rng)));
    window.sync_barrier(barrier, nullptr, "test: after the reads");
  }
  EXPECT_EQ(sy::test::sum_over_world(stale), 0) << "values read before their writer's barrier";
}

}  // namespace
