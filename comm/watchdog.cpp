#include "comm/watchdog.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>

#include "comm/mpi.h"

namespace sy::comm {

namespace {

void abort_on_timeout(const std::string& message) {
  std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
}

void abort_error_handler(MPI_Comm* comm, int* error_code, ...) {
  char name[MPI_MAX_OBJECT_NAME] = {};
  int name_len = 0;
  MPI_Comm_get_name(*comm, name, &name_len);
  std::fprintf(stderr, "rank %d: MPI error on %s: %s\n", world_rank(),
               name_len > 0 ? name : "a communicator", mpi_error_string(*error_code).c_str());
  std::fflush(stderr);
  MPI_Abort(*comm, 1);
}

}  // namespace

Watchdog::Watchdog(double timeout_s, TimeoutFn on_timeout)
    : timeout_s_(std::min(timeout_s, kMaxTimeoutS)),
      rank_(world_rank()),
      on_timeout_(on_timeout ? std::move(on_timeout) : TimeoutFn(abort_on_timeout)) {
  if (enabled()) thread_ = std::thread([this] { run(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Watchdog::arm(std::string_view what) {
  if (!enabled()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    what_.assign(what);  // reuses the string's capacity: no allocation once it is large enough
    armed_ = true;
    ++generation_;
    deadline_ = std::chrono::steady_clock::now() +
                std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                    std::chrono::duration<double>(timeout_s_));
  }
  cv_.notify_all();
}

Watchdog::Wait Watchdog::current() {
  if (!enabled()) return {};
  std::lock_guard<std::mutex> lock(mu_);
  if (!armed_) return {};  // no copy of `what` on the common, un-nested path
  return {true, what_};
}

void Watchdog::disarm() {
  if (!enabled()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = false;
    ++generation_;
  }
  cv_.notify_all();
}

void Watchdog::run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (!armed_) {
      cv_.wait(lock);
      continue;
    }
    const uint64_t generation = generation_;
    // In slices of at most a second, so that this thread sees when it did not run for far longer
    // than it slept (the process stopped by SIGSTOP or a debugger, the job suspended): that time
    // was not spent waiting, so the deadline moves by it. A stopped rank, woken by Open MPI's
    // SIGCONT before the kill, claimed a timeout of its own (the others' watchdogs name the
    // wait), and a job suspended for longer than the timeout aborted when resumed.
    using Clock = std::chrono::steady_clock;
    bool changed = false;
    while (Clock::now() < deadline_) {
      const Clock::time_point until = std::min(deadline_, Clock::now() + std::chrono::seconds(1));
      changed = cv_.wait_until(lock, until, [&] { return stop_ || generation_ != generation; });
      if (changed) break;
      const Clock::duration late = Clock::now() - until;
      if (late > std::chrono::seconds(2)) deadline_ += late;
    }
    if (changed) continue;
    // Still the same wait, past its deadline: fire once for this arm.
    armed_ = false;
    std::ostringstream os;
    os << "rank " << rank_ << ": timed out after " << timeout_s_ << "s waiting for " << what_;
    const std::string message = os.str();
    lock.unlock();
    on_timeout_(message);
    lock.lock();
  }
}

void install_abort_error_handler(MPI_Comm comm) {
  MPI_Errhandler handler = MPI_ERRHANDLER_NULL;
  MPI_CHECK(MPI_Comm_create_errhandler(abort_error_handler, &handler));
  MPI_CHECK(MPI_Comm_set_errhandler(comm, handler));
  // The communicator keeps its own reference; ours can go.
  MPI_CHECK(MPI_Errhandler_free(&handler));
}

}  // namespace sy::comm
