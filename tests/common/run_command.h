// Runs a shell command and captures its exit code and combined stdout+stderr (tests of the CLI).
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <stdexcept>
#include <string>

namespace sy::test {

struct CommandResult {
  int exit_code = -1;  // -1 when killed by a signal (a crash)
  std::string output;
};

inline CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  FILE* pipe = popen((cmd + " 2>&1").c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + cmd);
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) r.output.append(buf.data(), n);
  const int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// mpirun starting `np` ranks the way these machines need it (MACHINE-NOTES): as root, more ranks
// than cores, ranks yielding while they wait. A command word of its own, so it can follow
// `exec`, `env` or `switchyard guard --`.
inline std::string mpirun_command(int np) {
  return "mpirun --allow-run-as-root --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 "
         "-np " +
         std::to_string(np) + " ";
}

// The command prefix that starts `np` ranks the way the CLI tests launch jobs: mpirun_command
// with one BLAS/OpenMP thread per rank.
inline std::string mpirun(int np) {
  return "OMP_NUM_THREADS=1 " + mpirun_command(np);
}

}  // namespace sy::test
