// Bounded waits: a rank that waits on others longer than a timeout says what it waited for and
// brings the job down, instead of hanging until the scheduler kills it with no message.
//
//   Watchdog wd(60.0);
//   wd.arm("dispatch all-to-all on the EP communicator");  // before the collective
//   MPI_CHECK(MPI_Alltoallv(...));
//   wd.disarm();                                             // after it
//
// or `WatchdogScope scope(&wd, "...")` for the arm/disarm pair (null watchdog = no-op). Scopes
// nest: an inner scope (a collective inside a phase that is itself bounded) puts the outer wait
// back when it ends, with a fresh clock -- the bound is on each period without progress.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "comm/mpi.h"

namespace sy::comm {

class Watchdog {
 public:
  // Called on the watchdog thread with "rank R: timed out after Ns waiting for <what>".
  using TimeoutFn = std::function<void(const std::string& message)>;

  // timeout_s <= 0 disables the watchdog (no thread; arm/disarm do nothing); a timeout above
  // kMaxTimeoutS is clamped to it (the clock arithmetic overflows near 9e9 s; the config refuses
  // such values before they get here). The default
  // on_timeout prints the message to stderr and calls MPI_Abort(MPI_COMM_WORLD, 1); tests inject
  // their own. MPI_Abort is then called from a second thread: Open MPI accepts that at any
  // thread level, and the job is going down either way.
  explicit Watchdog(double timeout_s, TimeoutFn on_timeout = {});
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Starts (or restarts) the clock for a wait on `what`. Re-arming replaces the previous wait.
  void arm(std::string_view what);
  // Ends the wait. on_timeout fires at most once per arm.
  void disarm();

  bool enabled() const { return timeout_s_ > 0; }
  double timeout_s() const { return timeout_s_; }

  static constexpr double kMaxTimeoutS = 1e9;

  // What is armed now (what WatchdogScope puts back when an inner scope ends).
  struct Wait {
    bool armed = false;
    std::string what;
  };
  Wait current();

 private:
  void run();

  const double timeout_s_;
  const int rank_;
  TimeoutFn on_timeout_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool armed_ = false;
  uint64_t generation_ = 0;  // bumped by every arm/disarm, so a late timeout of an old wait is void
  std::chrono::steady_clock::time_point deadline_;
  std::string what_;
  std::thread thread_;  // last: started after every member it reads exists
};

// Arms on construction; on destruction re-arms the wait that was armed before (fresh clock) or
// disarms. `watchdog` may be null (nothing happens).
class WatchdogScope {
 public:
  WatchdogScope(Watchdog* watchdog, std::string_view what) : watchdog_(watchdog) {
    if (!watchdog_ || !watchdog_->enabled()) return;
    outer_ = watchdog_->current();
    watchdog_->arm(what);
  }
  ~WatchdogScope() {
    if (!watchdog_ || !watchdog_->enabled()) return;
    if (outer_.armed)
      watchdog_->arm(outer_.what);
    else
      watchdog_->disarm();
  }
  WatchdogScope(const WatchdogScope&) = delete;
  WatchdogScope& operator=(const WatchdogScope&) = delete;

 private:
  Watchdog* watchdog_;
  Watchdog::Wait outer_;
};

// Installs on `comm` an error handler that prints "rank R: MPI error on <comm>: <MPI's message>"
// to stderr and calls MPI_Abort(comm, 1). For MPI_COMM_WORLD at start-up: an MPI error outside
// MPI_CHECK'd communicators then names the rank instead of Open MPI's generic fatal message.
void install_abort_error_handler(MPI_Comm comm);

}  // namespace sy::comm
