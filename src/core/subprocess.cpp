#include "src/core/subprocess.h"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>

#include "src/core/unique_fd.h"

namespace sy {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

Captured run_captured(const std::string& cmd) {
  Captured r;
  const std::string script = "exec " + cmd;  // built before the fork: the child only calls
  int fds[2];                                // async-signal-safe functions
  if (::pipe(fds) != 0) return r;
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return r;
  if (pid == 0) {  // the child ends in exec or _exit: no destructor runs here
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(1);  // the parent died before the prctl
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  write_end.reset();  // the child's copy is the only writer: its exit ends the reads
  std::array<char, 4096> buf;
  for (ssize_t n; (n = ::read(read_end.get(), buf.data(), buf.size())) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    r.output.append(buf.data(), static_cast<size_t>(n));
  }
  read_end.reset();
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(status)     ? WEXITSTATUS(status)
                : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                      : -1;
  return r;
}

}  // namespace sy
