// What the fault tests (issue 15) share: whole `mpirun ... switchyard train` jobs started as
// processes the test owns (pid, output, a bound on how long they may run), the ranks of such a
// job found by pid, a token file, and a private tmpfs when this machine lets us mount one.
//
// Every wait here is bounded generously (a minute or more): a test fails when a job hangs, not
// when a loaded machine is slow. Every process a test starts is killed by pid when it is done.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/file_text.h"
#include "common/run_command.h"
#include "common/temp_dir.h"
#include "common/tiny_tokens.h"

namespace sy::test::faults {

// Jobs start with mpirun_command (no environment prefix: a command may start with `switchyard
// guard --`, which executes its first word); ctest gives these tests OMP_NUM_THREADS=1
// (tests.cmake).

// The binary under test: this build's, or SWITCHYARD_FAULTS_BIN (to show that another build --
// one without the fixes -- fails these tests).
inline const std::string kBin =
    std::getenv("SWITCHYARD_FAULTS_BIN") ? std::getenv("SWITCHYARD_FAULTS_BIN") : SWITCHYARD_BIN;
inline const std::string kSrc = SWITCHYARD_SOURCE_DIR;

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

using sy::test::read_file;

inline size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The parent pid and state letter of `pid` from /proc/<pid>/stat (ppid -1 when it is gone).
inline std::pair<pid_t, char> proc_stat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  std::getline(in, text);
  const size_t close = text.rfind(')');  // the command name may hold spaces and parentheses
  if (close == std::string::npos) return {-1, '?'};
  std::istringstream rest(text.substr(close + 2));
  char state = '?';
  pid_t ppid = -1;
  rest >> state >> ppid;
  return {ppid, state};
}

inline std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  if (!d) return out;
  while (const dirent* e = readdir(d)) {
    const pid_t pid = std::atoi(e->d_name);
    if (pid > 0 && proc_stat(pid).first == parent) out.push_back(pid);
  }
  closedir(d);
  return out;
}

inline std::vector<pid_t> descendants_of(pid_t root) {
  std::vector<pid_t> out = children_of(root);
  for (size_t i = 0; i < out.size(); ++i)
    for (pid_t c : children_of(out[i])) out.push_back(c);
  return out;
}

// The MPI rank a process was started as (from its environment), -1 when it has none.
inline int rank_of_process(pid_t pid) {
  const std::string env = read_file("/proc/" + std::to_string(pid) + "/environ");
  const std::string key = "OMPI_COMM_WORLD_RANK=";
  for (size_t at = 0; at < env.size(); at = env.find('\0', at) + 1) {
    if (env.compare(at, key.size(), key) == 0) return std::atoi(env.c_str() + at + key.size());
    if (env.find('\0', at) == std::string::npos) break;
  }
  return -1;
}

// Polls `done` every 50 ms for up to `limit_s`; whether it came true.
template <class F>
bool wait_until(double limit_s, F&& done) {
  const auto t0 = Clock::now();
  while (seconds_since(t0) < limit_s) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

// A job this test started: `sh -c "exec env <command>"` (so the pid is the command's, variable
// assignments allowed in front), stdout and stderr into `log_path`.
class Process {
 public:
  Process(const std::string& command, std::string log_path) : log_(std::move(log_path)) {
    t0_ = Clock::now();
    pid_ = fork();
    if (pid_ == 0) {
      const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      execl("/bin/sh", "sh", "-c", ("exec env " + command).c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~Process() { kill_all(); }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  bool running() const { return !ended_; }

  // Waits up to limit_s for the job to end: its exit code (128 + n when killed by signal n), or
  // -1 when it was still running (it is then killed, with everything it started).
  int wait(double limit_s) {
    if (!ended_) {
      wait_until(limit_s, [&] {
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) != pid_) return false;
        ended_ = true;
        seconds_ = seconds_since(t0_);
        code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return true;
      });
    }
    if (!ended_) {
      kill_all();
      return -1;
    }
    return code_;
  }
  double seconds() const { return seconds_; }
  std::string output() const { return read_file(log_); }

  // The pid of MPI rank `rank` among the job's processes (mpirun's children), -1 if it does not
  // show up within a minute.
  pid_t rank_pid(int rank) const {
    pid_t found = -1;
    wait_until(60, [&] {
      for (pid_t p : descendants_of(pid_))
        if (rank_of_process(p) == rank) found = p;
      return found > 0;
    });
    return found;
  }

 private:
  void kill_all() {
    if (ended_ || pid_ <= 0) return;
    for (pid_t p : descendants_of(pid_)) {
      ::kill(p, SIGKILL);
    }
    ::kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    ended_ = true;
  }

  std::string log_;
  pid_t pid_ = -1;
  Clock::time_point t0_;
  bool ended_ = false;
  int code_ = -1;
  double seconds_ = 0;
};

// Whether the process `pid` is stopped (SIGSTOP), waiting up to a minute for it to be.
inline bool wait_stopped(pid_t pid) {
  return wait_until(60, [&] { return proc_stat(pid).second == 'T'; });
}

// A token file and a fresh directory per test, and the `switchyard train` line for the tiny
// model with checkpoints every `every` steps.
class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto r = prepare_tiny_tokens(dir_, kBin);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  // `switchyard train` of the tiny model into `out` (run.out_dir; checkpoints in out/checkpoints)
  // for `steps` steps, checkpoints every 5, parallel.ep=2 (run it on 2 or 4 ranks).
  std::string train(const std::string& out, int steps, const std::string& extra = "") const {
    return kBin + " train --config " + kSrc +
           "/configs/tiny.yaml --set data.path=" + dir_.file("t.h5") + " --set run.out_dir=" + out +
           " --set train.steps=" + std::to_string(steps) +
           " --set checkpoint.every=5 --set parallel.ep=2 --set train.micro_batch=1"
           " --set eval.every=0 --set eval.sequences=2 --set log.every=1 " +
           extra;
  }

  std::string path(const std::string& name) const { return dir_.file(name); }

  TempDir dir_;
};

inline std::string latest_of(const std::string& ckpt_dir) {
  std::ifstream in(ckpt_dir + "/latest");
  std::string name;
  in >> name;
  return name;
}

// Whether this machine lets a test mount a private tmpfs (`unshare -m`, root, CAP_SYS_ADMIN).
inline bool can_mount_tmpfs() {
  TempDir d;
  const auto r = run_command("unshare -m sh -c 'mount -t tmpfs -o size=1m tmpfs " +
                             d.path().string() + "' 2>&1");
  return r.exit_code == 0;
}

// `script` run by sh in a private mount namespace where a tmpfs of `size` is mounted at `dir`
// (which must exist). The mount vanishes with the namespace, so checks of its contents belong
// in the script.
inline std::string in_tmpfs(const std::string& size, const std::string& dir,
                            const std::string& script) {
  const std::string inner = "mount --make-rprivate / && mount -t tmpfs -o size=" + size +
                            " tmpfs " + dir + " && " + script;
  std::string quoted = "'";
  for (char c : inner) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return "unshare -m sh -c " + quoted + "'";
}

// Waits until `job` has logged step 3 into <out>/metrics.jsonl (or ended).
inline bool trained_a_few_steps(const Process& job, const std::string& out) {
  return wait_until(120, [&] {
    return read_file(out + "/metrics.jsonl").find("\"step\":3,") != std::string::npos ||
           !job.running();
  });
}

}  // namespace sy::test::faults
