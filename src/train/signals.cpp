#include "src/train/signals.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "comm/watchdog.h"
#include "src/core/error.h"

namespace sy {

namespace {

// Process-wide mutable state, as a signal handler can reach nothing else (the trainer's flag here,
// the guard's counts in launch_guard.cpp: switchyard has no other). Lock-free atomics are
// async-signal-safe (a volatile sig_atomic_t would be too, but cannot do the compare-exchange that
// keeps the first signal's number).
std::atomic<int> g_signal{0};
std::atomic<bool> g_installed{false};
std::atomic<bool> g_exit_before_training{false};
std::atomic<bool> g_announce{true};  // this process prints the before-training line
// MPI is starting (set before main, cleared once MPI_Init has returned): a stop before training is
// recorded and acted on when MPI is up. A rank that ended while MPI_Init connected it to
// mpirun's PMIx server, or while another rank's did, left mpirun (Open MPI 4.1, PMIx 3)
// deadlocked in its finalize: the job never ended.
std::atomic<bool> g_mpi_starting{false};
std::atomic<const PreemptionSignals*> g_instance{nullptr};
static_assert(std::atomic<int>::is_always_lock_free);
static_assert(std::atomic<bool>::is_always_lock_free);

// Appends `text` to line[0..n) without going past `cap` (strlen and memcpy are async-signal-safe).
void append(char* line, size_t& n, size_t cap, const char* text) {
  const size_t len = std::min(std::strlen(text), cap - n);
  std::memcpy(line + n, text, len);
  n += len;
}

// Before training: nothing to save, and the process may sit in start-up work that no step
// boundary follows (reading a large file, waiting for a peer): it ends now, as "try again".
[[noreturn]] void exit_stopped_early(int sig) {
  if (g_announce.load()) {
    char line[256];
    size_t n = 0;
    append(line, n, sizeof line, "switchyard: ");
    append(line, n, sizeof line,
           sig == SIGUSR1   ? "SIGUSR1"
           : sig == SIGTERM ? "SIGTERM"
           : sig == SIGHUP  ? "SIGHUP"
                            : "a signal");
    append(line, n, sizeof line,
           " before training started (a preemption, or the launcher ending the job after another "
           "rank failed): nothing to checkpoint, exiting with 76\n");
    const ssize_t ignored = ::write(STDERR_FILENO, line, n);
    (void)ignored;
  }
  ::_exit(kExitStoppedEarly);
}

// How long a stop that came while MPI started waits for MPI_Init to return (mpi_is_up) before
// the process ends anyway: a peer that never comes would hold it for parallel.timeout_s.
constexpr unsigned kMpiStartGraceSeconds = 10;

extern "C" void on_mpi_start_grace_over(int) {
  if (g_mpi_starting.load()) exit_stopped_early(g_signal.load());
}

extern "C" void on_preemption_signal(int sig) {
  int expected = 0;
  const bool first = g_signal.compare_exchange_strong(expected, sig);
  if (!g_exit_before_training.load()) return;
  if (!g_mpi_starting.load()) exit_stopped_early(sig);
  if (!first) return;
  // sigaction and alarm are async-signal-safe; SIGALRM is no one else's before MPI is up, and
  // mpi_is_up ends the process once one came, so its disposition never needs putting back.
  struct sigaction sa {};
  sa.sa_handler = on_mpi_start_grace_over;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGALRM, &sa, nullptr);
  ::alarm(kMpiStartGraceSeconds);
}

struct sigaction preemption_action() {
  struct sigaction sa {};
  sa.sa_handler = on_preemption_signal;
  sigemptyset(&sa.sa_mask);
  // SA_RESTART: a blocking read or MPI progress call interrupted by the signal resumes instead
  // of failing with EINTR; the flag is looked at between steps.
  sa.sa_flags = SA_RESTART;
  return sa;
}

void install(int sig, struct sigaction* old) {
  const struct sigaction sa = preemption_action();
  if (sigaction(sig, &sa, old) != 0)
    throw std::runtime_error("sigaction(" + std::to_string(sig) + ") failed");
}

}  // namespace

PreemptionSignals::PreemptionSignals(Mode mode, Restore restore, bool hangup)
    : restore_(restore), hangup_(hangup) {
  if (g_installed.exchange(true))
    throw std::logic_error("PreemptionSignals: an instance already exists in this process");
  g_announce.store(launcher_rank() <= 0);
  g_exit_before_training.store(mode == Mode::kExitBeforeTraining);
  try {
    install(SIGUSR1, &old_usr1_);
  } catch (...) {
    g_installed.store(false);
    throw;
  }
  try {
    install(SIGTERM, &old_term_);
    if (hangup_) install(SIGHUP, &old_hup_);
  } catch (...) {
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGUSR1, &old_usr1_, nullptr);
    g_installed.store(false);
    throw;
  }
  g_instance.store(this);
}

PreemptionSignals::~PreemptionSignals() {
  g_instance.store(nullptr);
  g_exit_before_training.store(false);
  // Kept: a signal that arrives while the process exits (MPI_Finalize, static destructors) must
  // find our recording handler, not the default action that kills with 128 + n.
  if (restore_ == Restore::kNever) return;
  if (hangup_) sigaction(SIGHUP, &old_hup_, nullptr);
  sigaction(SIGTERM, &old_term_, nullptr);
  sigaction(SIGUSR1, &old_usr1_, nullptr);
  g_signal.store(0);  // the next instance starts without this one's signal
  g_installed.store(false);
}

void PreemptionSignals::start_up_over() const {
  g_exit_before_training.store(false);
}

const PreemptionSignals* PreemptionSignals::installed() {
  return g_instance.load();
}

void PreemptionSignals::mpi_is_up() const {
  g_mpi_starting.store(false);
  const int sig = g_signal.load();
  if (sig != 0 && g_exit_before_training.load()) exit_stopped_early(sig);
}

void PreemptionSignals::catch_before_main(bool hangup) noexcept {
  g_announce.store(launcher_rank() <= 0);
  g_exit_before_training.store(true);
  g_mpi_starting.store(true);
  const struct sigaction sa = preemption_action();
  for (int sig : {SIGUSR1, SIGTERM}) sigaction(sig, &sa, nullptr);  // cannot fail for these
  if (hangup) sigaction(SIGHUP, &sa, nullptr);
}

int launcher_rank() {
  // PMI_RANK before SLURM_PROCID: a hydra launcher (MPICH, Intel MPI) inside a SLURM job starts
  // its ranks from one srun task per node, whose SLURM_PROCID they inherit.
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"})
    if (const char* v = std::getenv(var)) return std::atoi(v);
  return -1;
}

int launcher_size() {
  // SLURM_STEP_NUM_TASKS, which srun sets for the processes it starts, not SLURM_NTASKS, which a
  // batch script has too: a command run in it directly is one process of an allocation for more.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"})
    if (const char* v = std::getenv(var)) return std::atoi(v);
  return -1;
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
    case SIGHUP:
      return "SIGHUP";
    default:
      return "";
  }
}

bool stop_requested(MPI_Comm comm, const PreemptionSignals& signals, comm::Watchdog* watchdog) {
  int flag = signals.requested() ? 1 : 0;
  comm::WatchdogScope scope(watchdog,
                            "the per-step stop check (an all-reduce: did any rank get SIGUSR1 or "
                            "SIGTERM?)");
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &flag, 1, MPI_INT, MPI_LOR, comm));
  return flag != 0;
}

}  // namespace sy
