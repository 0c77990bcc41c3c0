// Preemption signals: a signal that reaches one rank stops every rank after the same step, and
// the handlers are put back as they were.
#include <gtest/gtest.h>

#include <csignal>

#include "ckpt_test_util.h"
#include "src/train/signals.h"

namespace {

using namespace sy;
using namespace sy::test;

volatile std::sig_atomic_t g_previous_handler_ran = 0;
extern "C" void previous_handler(int) {
  g_previous_handler_ran = 1;
}

TEST(CkptSignals, OneRanksSignalStopsEveryRank) {
  for (int sig : {SIGUSR1, SIGTERM}) {
    PreemptionSignals signals;
    EXPECT_FALSE(signals.requested());
    EXPECT_FALSE(stop_requested(MPI_COMM_WORLD, signals)) << "no signal yet";
    const int sender = size_of() - 1;  // the last rank only, as when one node is told first
    if (rank_of() == sender) {
      std::raise(sig);
      EXPECT_TRUE(signals.requested());
      EXPECT_EQ(signals.signal_number(), sig);
      EXPECT_STREQ(signals.signal_name(), sig == SIGUSR1 ? "SIGUSR1" : "SIGTERM");
    } else {
      EXPECT_FALSE(signals.requested());
    }
    EXPECT_TRUE(stop_requested(MPI_COMM_WORLD, signals)) << "signal " << sig;
  }
}

TEST(CkptSignals, TheFirstSignalIsKeptAndHandlersAreRestored) {
  struct sigaction mine {
  }, old_usr1{}, old_term{};
  mine.sa_handler = previous_handler;
  sigemptyset(&mine.sa_mask);
  ASSERT_EQ(sigaction(SIGUSR1, &mine, &old_usr1), 0);
  ASSERT_EQ(sigaction(SIGTERM, &mine, &old_term), 0);
  {
    PreemptionSignals signals;
    EXPECT_THROW(PreemptionSignals second, std::logic_error);
    std::raise(SIGTERM);
    std::raise(SIGUSR1);
    EXPECT_EQ(signals.signal_number(), SIGTERM);
    EXPECT_EQ(g_previous_handler_ran, 0) << "our handler must replace the previous one";
  }
  std::raise(SIGUSR1);
  EXPECT_EQ(g_previous_handler_ran, 1) << "the previous SIGUSR1 handler was not restored";
  g_previous_handler_ran = 0;
  std::raise(SIGTERM);
  EXPECT_EQ(g_previous_handler_ran, 1) << "the previous SIGTERM handler was not restored";
  sigaction(SIGUSR1, &old_usr1, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
}

}  // namespace
