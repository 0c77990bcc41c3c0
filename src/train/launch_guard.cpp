#include "src/train/launch_guard.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <fstream>
#include <ostream>
#include <stdexcept>

namespace sy {

namespace {

// Signals the guard received (SIGTERM, SIGUSR1) and has to pass on. Process-wide like the
// trainer's flag in signals.cpp: a signal handler can reach nothing else.
std::atomic<int> g_requests{0};

extern "C" void on_guard_signal(int) {
  g_requests.fetch_add(1);
}

// Whether `pid` has a SIGTERM pending (blocked, so it waits there): /proc/<pid>/status lists the
// pending signals of the thread (SigPnd) and of the process (ShdPnd) as hex masks.
bool sigterm_pending(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  const uint64_t bit = uint64_t{1} << (SIGTERM - 1);
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("SigPnd:") || line.starts_with("ShdPnd:"))
      if (std::strtoull(line.c_str() + 7, nullptr, 16) & bit) return true;
  return false;
}

int exit_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int run_guarded(const std::vector<std::string>& argv, std::ostream& log) {
  if (argv.empty()) throw std::runtime_error("guard: no command to run");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  struct sigaction sa {};
  sa.sa_handler = on_guard_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  struct sigaction old_term {
  }, old_usr1{};
  sigaction(SIGTERM, &sa, &old_term);
  sigaction(SIGUSR1, &sa, &old_usr1);
  // Blocked across the fork: the launcher inherits the blocked SIGTERM through exec.
  sigset_t term, old_mask;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_BLOCK, &term, &old_mask);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execvp(args[0], args.data());
    const std::string msg =
        "switchyard guard: cannot run " + argv[0] + ": " + std::strerror(errno) + "\n";
    const ssize_t ignored = ::write(STDERR_FILENO, msg.data(), msg.size());
    (void)ignored;
    ::_exit(127);
  }
  const int fork_errno = errno;
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);  // the guard itself takes SIGTERM again
  if (pid < 0) {
    sigaction(SIGTERM, &old_term, nullptr);
    sigaction(SIGUSR1, &old_usr1, nullptr);
    throw std::runtime_error(std::string("guard: fork failed: ") + std::strerror(fork_errno));
  }

  int passed = g_requests.load();  // signals that came before the launcher existed are dropped
  bool pending_seen = false;
  int status = 0;
  while (true) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) {
      status = 1 << 8;  // exit status 1: the launcher is not ours any more
      break;
    }
    const int requests = g_requests.load();
    bool pass = requests > passed;
    if (!pending_seen && sigterm_pending(pid)) pass = pending_seen = true;
    if (pass) {
      passed = requests;
      log << "switchyard guard: a stop signal for " << argv[0]
          << ": passing it on as SIGUSR1, so the ranks checkpoint and exit with 75" << std::endl;
      ::kill(pid, SIGUSR1);
    }
    const timespec tick{0, 100'000'000};  // 100 ms: a signal waits at most this long
    ::nanosleep(&tick, nullptr);
  }
  sigaction(SIGTERM, &old_term, nullptr);
  sigaction(SIGUSR1, &old_usr1, nullptr);
  return exit_status(status);
}

}  // namespace sy
