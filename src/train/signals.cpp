#include "src/train/signals.h"

#include <atomic>
#include <stdexcept>
#include <string>

namespace sy {

namespace {

// The one piece of process-wide mutable state switchyard has: a signal handler can reach nothing
// else. Lock-free atomics are async-signal-safe (a volatile sig_atomic_t would be too, but cannot
// do the compare-exchange that keeps the first signal's number).
std::atomic<int> g_signal{0};
std::atomic<bool> g_installed{false};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void on_preemption_signal(int sig) {
  int expected = 0;
  g_signal.compare_exchange_strong(expected, sig);
}

void install(int sig, struct sigaction* old) {
  struct sigaction sa {};
  sa.sa_handler = on_preemption_signal;
  sigemptyset(&sa.sa_mask);
  // SA_RESTART: a blocking read or MPI progress call interrupted by the signal resumes instead
  // of failing with EINTR; the flag is looked at between steps.
  sa.sa_flags = SA_RESTART;
  if (sigaction(sig, &sa, old) != 0)
    throw std::runtime_error("sigaction(" + std::to_string(sig) + ") failed");
}

}  // namespace

PreemptionSignals::PreemptionSignals() {
  if (g_installed.exchange(true))
    throw std::logic_error("PreemptionSignals: an instance already exists in this process");
  g_signal.store(0);
  try {
    install(SIGUSR1, &old_usr1_);
  } catch (...) {
    g_installed.store(false);
    throw;
  }
  try {
    install(SIGTERM, &old_term_);
  } catch (...) {
    sigaction(SIGUSR1, &old_usr1_, nullptr);
    g_installed.store(false);
    throw;
  }
}

PreemptionSignals::~PreemptionSignals() {
  sigaction(SIGTERM, &old_term_, nullptr);
  sigaction(SIGUSR1, &old_usr1_, nullptr);
  g_installed.store(false);
}

bool PreemptionSignals::requested() const {
  return g_signal.load() != 0;
}

int PreemptionSignals::signal_number() const {
  return g_signal.load();
}

const char* PreemptionSignals::signal_name() const {
  switch (g_signal.load()) {
    case SIGUSR1:
      return "SIGUSR1";
    case SIGTERM:
      return "SIGTERM";
    default:
      return "";
  }
}

bool stop_requested(MPI_Comm comm, const PreemptionSignals& signals) {
  int flag = signals.requested() ? 1 : 0;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &flag, 1, MPI_INT, MPI_LOR, comm));
  return flag != 0;
}

}  // namespace sy
