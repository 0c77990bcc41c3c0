#include "src/train/launch_guard.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <vector>

namespace sy {

namespace {

// Signals the guard received (SIGUSR1 and the stop signals below) and has to pass on. Process-wide
// like the trainer's flag in signals.cpp: a signal handler can reach nothing else.
std::atomic<int> g_requests{0};
std::atomic<int> g_interrupts{0};  // of them, SIGINT (Ctrl-C): the second one kills

extern "C" void on_guard_signal(int sig) {
  if (sig == SIGINT) g_interrupts.fetch_add(1);
  g_requests.fetch_add(1);
}

// Takes SIGUSR1 and the stop signals for on_guard_signal; `old_actions`, when given, gets each
// one's previous action. A stop signal ignored now stays ignored (a shell's background job
// ignores SIGINT: its script traps Ctrl-C itself, as jobs/local.sh does).
void take_guard_signals(std::vector<std::pair<int, struct sigaction>>* old_actions) {
  struct sigaction sa {};
  sa.sa_handler = on_guard_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGUSR1, SIGTERM, SIGINT, SIGHUP}) {
    struct sigaction old {};
    sigaction(sig, nullptr, &old);
    if (sig != SIGUSR1 && sig != SIGTERM && old.sa_handler == SIG_IGN) continue;
    sigaction(sig, &sa, nullptr);
    if (old_actions != nullptr) old_actions->emplace_back(sig, old);
  }
}

// /proc/<pid>/stat's fields after the command (which may hold spaces and parentheses): [0] is
// field 3 (state), [1] field 4 (ppid), [19] field 22 (start time, clock ticks after boot). Empty
// when it cannot be read (gone).
std::vector<std::string> stat_fields(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return {};
  std::istringstream rest(stat.substr(close + 1));
  std::vector<std::string> fields;
  for (std::string f; rest >> f;) fields.push_back(f);
  return fields;
}

// The parent of `pid`, 0 when unknown.
pid_t parent_of(pid_t pid) {
  const std::vector<std::string> f = stat_fields(pid);
  return f.size() > 1 ? static_cast<pid_t>(std::atoi(f[1].c_str())) : 0;
}

// Every process below `root` (children first found, then theirs), from /proc/<pid>/stat's ppid.
std::vector<pid_t> descendants_of(pid_t root) {
  std::vector<std::pair<pid_t, pid_t>> parents;  // (pid, ppid)
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto pid = static_cast<pid_t>(std::stoi(name));
    parents.emplace_back(pid, parent_of(pid));
  }
  std::vector<pid_t> out = {root};
  for (size_t i = 0; i < out.size(); ++i)
    for (const auto& [pid, ppid] : parents)
      if (ppid == out[i]) out.push_back(pid);
  out.erase(out.begin());
  return out;
}

// The stop signals the guard takes for the launcher: a scheduler's SIGTERM, a terminal's Ctrl-C
// (SIGINT, sent to the whole foreground group: guard and launcher) and hang-up (SIGHUP).
constexpr int kStopSignals[] = {SIGTERM, SIGINT, SIGHUP};

// Whether `pid` has one of the stop signals pending (blocked, so it waits there):
// /proc/<pid>/status lists the pending signals of the thread (SigPnd) and of the process (ShdPnd)
// as hex masks.
bool stop_signal_pending(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  uint64_t bits = 0;
  for (int sig : kStopSignals) bits |= uint64_t{1} << (sig - 1);
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("SigPnd:") || line.starts_with("ShdPnd:"))
      if (std::strtoull(line.c_str() + 7, nullptr, 16) & bits) return true;
  return false;
}

// How long ago `pid` started, in seconds (a large number when it cannot be read):
// /proc/<pid>/stat's 22nd field (start time, clock ticks after boot) against /proc/uptime.
double seconds_since_start(pid_t pid) {
  const std::vector<std::string> f = stat_fields(pid);
  double uptime = 0;
  if (f.size() < 20 || !(std::ifstream("/proc/uptime") >> uptime)) return 1e9;
  return uptime - std::atof(f[19].c_str()) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// A process younger than this is still starting: a rank between its exec and its handlers, mpirun
// before its forwarding or before it has started its ranks. Not a long-lived helper such as a
// multi-node mpirun's ssh clients, which the signal does not go to anyway.
constexpr double kStartingSeconds = 5.0;

// Whether `pid` would die of `sig`: alive (not a zombie), neither catching `sig`
// (/proc/<pid>/status SigCgt) nor ignoring it (SigIgn). The bit of `sig` itself: a rank catches
// SIGHUP (libucs's constructor) before it catches SIGUSR1.
bool would_die_of(pid_t pid, int sig) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  const uint64_t bit = uint64_t{1} << (sig - 1);
  bool seen = false;
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("State:") && line.find('Z') != std::string::npos) return false;
    if ((line.starts_with("SigIgn:") || line.starts_with("SigCgt:")) &&
        (std::strtoull(line.c_str() + 7, nullptr, 16) & bit))
      return false;
    if (line.starts_with("SigCgt:")) seen = true;
  }
  return seen;  // nothing read: gone, nothing to die
}

// Whether `pid` is a fork of its parent that has not exec'd yet (the same executable): it shows
// the parent's handlers, which it loses at its exec (mpirun's fork of a rank).
bool not_execd_yet(pid_t pid) {
  const pid_t ppid = parent_of(pid);
  if (ppid <= 1) return false;
  std::error_code ec1, ec2;
  const auto exe = std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec1);
  const auto parent = std::filesystem::read_symlink("/proc/" + std::to_string(ppid) + "/exe", ec2);
  return !ec1 && !ec2 && exe == parent;
}

// ... and is still starting (younger than kStartingSeconds), or will be once it execs.
bool starting_and_would_die_of(pid_t pid, int sig) {
  return seconds_since_start(pid) < kStartingSeconds &&
         (would_die_of(pid, sig) || not_execd_yet(pid));
}

int exit_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

void catch_guard_signals() noexcept {
  take_guard_signals(nullptr);
}

int run_guarded(const std::vector<std::string>& argv, std::ostream& log) {
  if (argv.empty()) throw std::runtime_error("guard: no command to run");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  // SIGUSR1 and the stop signals, each with the action it had (restored on return).
  std::vector<std::pair<int, struct sigaction>> old_actions;
  const auto restore = [&] {
    for (const auto& [sig, old] : old_actions) sigaction(sig, &old, nullptr);
  };
  take_guard_signals(&old_actions);
  // Blocked across the fork: the launcher inherits the blocked stop signals through exec.
  sigset_t stop, old_mask;
  sigemptyset(&stop);
  for (int sig : kStopSignals) sigaddset(&stop, sig);
  sigprocmask(SIG_BLOCK, &stop, &old_mask);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execvp(args[0], args.data());
    const int exec_errno = errno;
    const std::string msg =
        "switchyard guard: cannot run " + argv[0] + ": " + std::strerror(exec_errno) + "\n";
    const ssize_t ignored = ::write(STDERR_FILENO, msg.data(), msg.size());
    (void)ignored;
    // The shell's convention: 127 not found, 126 found but not runnable (no permission, not an
    // executable file).
    ::_exit(exec_errno == ENOENT || exec_errno == ENOTDIR ? 127 : 126);
  }
  const int fork_errno = errno;
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);  // the guard itself takes them again
  if (pid < 0) {
    restore();
    throw std::runtime_error(std::string("guard: fork failed: ") + std::strerror(fork_errno));
  }

  // Every request since the handlers went in is passed on, one that came before the fork too.
  int passed = 0;
  bool pending_seen = false;
  // Once a stop is passed, SIGUSR1 again until the launcher ends, after 2 s, then 4, 8, ... up to
  // 64 s apart: mpirun drops what arrives before its ranks exist ("Forwarding signal 10 to job",
  // and the job trained to its end with exit 0), and a rank keeps only the first (before training
  // it exits 76, after its checkpoint it ignores the rest), so another one costs nothing but
  // mpirun's line about it.
  // A SIGUSR1 is held while the launcher or a process below it is starting and would die of it
  // (starting_and_would_die_of: a job stopped in its first tenth of a second ended 138, the
  // checkpoint it could have written lost), or while the launcher is starting and has started
  // nothing, or while the launcher is starting and the set of processes below it changed in the
  // last kSettleTicks (mpirun forwards a stop to each rank as it forks it: one forked just after
  // the others were ready died of it, 138), up to kHoldTicks; then it goes anyway. Once one has
  // been passed, none goes to a launcher that would die of it.
  constexpr int kFirstResendTicks = 20, kLastResendTicks = 640, kHoldTicks = 100, kSettleTicks = 5;
  std::vector<pid_t> last_below;  // the processes below the launcher at the last tick looked
  int settled_ticks = 0;          // ticks since they last changed (looked at while it is young)
  int resend_ticks = kFirstResendTicks;
  int ticks_since_pass = -1;  // -1: none passed yet
  int held_ticks = -1;        // >= 0: a SIGUSR1 owed, held for that many ticks
  bool said = false;          // the owed one is a new request: say so when it goes
  int status = 0;
  while (true) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      status = 1 << 8;  // exit status 1: the launcher is not ours any more
      break;
    }
    if (g_interrupts.load() >= 2) {  // Ctrl-C again: the user will not wait for the checkpoint
      log << "switchyard guard: Ctrl-C again: killing " << argv[0]
          << " and its ranks now (SIGKILL); the checkpoints written so far are kept" << std::endl;
      for (pid_t p : descendants_of(pid)) ::kill(p, SIGKILL);
      ::kill(pid, SIGKILL);
      g_interrupts.store(0);
    }
    const int requests = g_requests.load();
    bool pass = requests > passed;
    if (!pending_seen && stop_signal_pending(pid)) pass = pending_seen = true;
    if (pass) {
      passed = requests;
      said = false;
      resend_ticks = kFirstResendTicks;
      if (held_ticks < 0) held_ticks = 0;
    } else if (held_ticks < 0 && ticks_since_pass >= 0 && ++ticks_since_pass >= resend_ticks) {
      held_ticks = 0;
      said = true;
      resend_ticks = std::min(2 * resend_ticks, kLastResendTicks);
    }
    // The processes below a young launcher, every tick (a stop is held only while they change,
    // not for half a second from whenever it came).
    const bool young = seconds_since_start(pid) < kStartingSeconds;
    if (young || held_ticks >= 0) {
      std::vector<pid_t> below = descendants_of(pid);
      std::sort(below.begin(), below.end());
      settled_ticks = below == last_below ? settled_ticks + 1 : 0;
      last_below = std::move(below);
    }
    if (held_ticks >= 0) {
      std::vector<pid_t> below = last_below;
      // A launcher still starting that has started nothing yet, or is still starting processes:
      // mpirun forwards the stop to its ranks as soon as they exist, so it is held until they do
      // (and have their handlers).
      const bool starting = young && (below.empty() || settled_ticks < kSettleTicks);
      below.push_back(pid);
      const bool hold = held_ticks < kHoldTicks &&
                        (starting || std::any_of(below.begin(), below.end(), [](pid_t p) {
                           return starting_and_would_die_of(p, SIGUSR1);
                         }));
      if (hold) {
        ++held_ticks;
      } else if (ticks_since_pass >= 0 && would_die_of(pid, SIGUSR1)) {
        // One was passed, and the launcher no longer catches SIGUSR1: it is ending (mpirun takes
        // its forwarding down while it ends the job its ranks left). Another would kill it (138).
        held_ticks = -1;
        ticks_since_pass = 0;
      } else {
        if (!said)
          log << "switchyard guard: a stop signal for " << argv[0]
              << ": passing it on as SIGUSR1, so the ranks checkpoint and exit with 75"
              << std::endl;
        ::kill(pid, SIGUSR1);
        said = true;
        held_ticks = -1;
        ticks_since_pass = 0;
      }
    }
    const timespec tick{0, 100'000'000};  // 100 ms: a signal waits at most this long
    ::nanosleep(&tick, nullptr);
  }
  restore();
  return exit_status(status);
}

}  // namespace sy
