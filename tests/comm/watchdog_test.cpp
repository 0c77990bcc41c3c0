// Watchdog arm/disarm logic, with an injected on_timeout (the default would abort the job).
// Rank-local: no collectives, so timing differences between ranks cannot deadlock anything.
#include "comm/watchdog.h"

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/mpi_util.h"

namespace {

using namespace std::chrono_literals;
using sy::comm::Watchdog;
using sy::comm::WatchdogScope;

// Collects the timeout messages the watchdog thread reports.
struct Recorder {
  std::mutex mu;
  std::vector<std::string> messages;

  Watchdog::TimeoutFn fn() {
    return [this](const std::string& m) {
      std::lock_guard<std::mutex> lock(mu);
      messages.push_back(m);
    };
  }
  size_t count() {
    std::lock_guard<std::mutex> lock(mu);
    return messages.size();
  }
  // Polls until `n` messages arrived or 10 s passed (ranks share 2 cores: be generous).
  bool wait_for(size_t n) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (count() >= n) return true;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }
};

TEST(Watchdog, FiresOnceWithRankTimeoutAndWhat) {
  Recorder rec;
  Watchdog wd(0.05, rec.fn());
  wd.arm("the dispatch all-to-all");
  ASSERT_TRUE(rec.wait_for(1));
  std::this_thread::sleep_for(150ms);  // still armed, already fired: must not fire again
  wd.disarm();
  ASSERT_EQ(rec.count(), 1u);
  EXPECT_EQ(rec.messages[0], "rank " + std::to_string(sy::test::world_rank()) +
                                 ": timed out after 0.05s waiting for the dispatch all-to-all");
}

// Never before the deadline: from arm() to the report at least timeout_s passes (a lower bound
// only, which a loaded machine can only make longer).
TEST(Watchdog, FiresNoEarlierThanTheTimeout) {
  Recorder rec;
  Watchdog wd(0.4, rec.fn());
  const auto start = std::chrono::steady_clock::now();
  wd.arm("a timed wait");
  ASSERT_TRUE(rec.wait_for(1));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 400ms);
  wd.disarm();
}

TEST(Watchdog, DisarmBeforeTheDeadlineDoesNotFire) {
  Recorder rec;
  Watchdog wd(0.5, rec.fn());
  wd.arm("a short wait");
  std::this_thread::sleep_for(100ms);
  wd.arm("a second short wait");  // re-arming restarts the clock
  std::this_thread::sleep_for(100ms);
  wd.disarm();
  std::this_thread::sleep_for(600ms);  // past both deadlines
  EXPECT_EQ(rec.count(), 0u);
}

TEST(Watchdog, FiresAgainAfterReArming) {
  Recorder rec;
  Watchdog wd(0.03, rec.fn());
  wd.arm("first");
  ASSERT_TRUE(rec.wait_for(1));
  wd.disarm();
  wd.arm("second");
  ASSERT_TRUE(rec.wait_for(2));
  wd.disarm();
  EXPECT_NE(rec.messages[0].find("waiting for first"), std::string::npos);
  EXPECT_NE(rec.messages[1].find("waiting for second"), std::string::npos);
}

TEST(Watchdog, ScopeArmsAndDisarms) {
  Recorder rec;
  Watchdog wd(0.03, rec.fn());
  {
    WatchdogScope scope(&wd, "a scoped wait");
    ASSERT_TRUE(rec.wait_for(1));
  }
  { WatchdogScope quick(&wd, "a quick wait"); }
  { WatchdogScope none(nullptr, "nothing to watch"); }
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(rec.count(), 1u);
}

// A collective inside a bounded phase (an agreement inside a checkpoint write) must not leave the
// phase unwatched when it ends: the outer wait is armed again.
TEST(Watchdog, NestedScopePutsTheOuterWaitBack) {
  Recorder rec;
  Watchdog wd(0.2, rec.fn());
  {
    WatchdogScope outer(&wd, "the outer phase");
    { WatchdogScope inner(&wd, "a quick inner collective"); }
    ASSERT_TRUE(rec.wait_for(1)) << "the outer wait was left disarmed";
  }
  EXPECT_NE(rec.messages[0].find("waiting for the outer phase"), std::string::npos)
      << rec.messages[0];
}

// parallel.timeout_s = 1e10 overflowed the clock arithmetic and fired at once (issue 15, item 4).
TEST(Watchdog, AHugeTimeoutDoesNotFireAtOnce) {
  Recorder rec;
  Watchdog wd(1e10, rec.fn());
  wd.arm("a wait with a very long bound");
  std::this_thread::sleep_for(200ms);
  wd.disarm();
  EXPECT_EQ(rec.count(), 0u) << rec.messages.front();
}

TEST(Watchdog, DisabledAndDestroyedWhileArmed) {
  Recorder rec;
  {
    Watchdog off(0.0, rec.fn());
    EXPECT_FALSE(off.enabled());
    off.arm("never reported");
    std::this_thread::sleep_for(50ms);
  }
  const auto start = std::chrono::steady_clock::now();
  {
    Watchdog wd(30.0, rec.fn());
    wd.arm("a wait cut short by the destructor");
    std::this_thread::sleep_for(50ms);  // the thread is (most likely) waiting on the deadline now
  }                                     // must join promptly without firing
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(rec.count(), 0u);
}

}  // namespace
