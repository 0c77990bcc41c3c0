// Errors and exit codes (SPEC section 9).
//
// Code throws; app/ catches at the top and turns the exception type into the exit code:
//   UsageError     -> 2  bad usage, bad config or bad input file (message names key/file and what)
//   NumericalError -> 3  non-finite loss or gradients
//   anything else  -> 1
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace sy {

// kExitPreempted and kExitStoppedEarly are switchyard's additions to SPEC section 9, for the job
// scripts. 75 (EX_TEMPFAIL of sysexits.h, "try again later"): SIGUSR1/SIGTERM arrived, the current
// step finished and a checkpoint was written; the job is requeued. 76: the signal came before
// training started, so nothing was written: a try again that made no progress, which a job
// script must not requeue without end (a --time shorter than start-up plus the warning margin).
enum ExitCode : int {
  kExitOk = 0,
  kExitOther = 1,
  kExitUsage = 2,
  kExitNumerical = 3,
  kExitPreempted = 75,
  kExitStoppedEarly = 76
};

// An error with its exit code. `quiet`: every rank of the job found the same problem and another
// rank (rank 0, or the rank that failed alone) reports it, so this rank prints nothing; under a
// launcher it exits 0 (app/run_mpi.h says why), and the reporting rank exits with the code.
class Error : public std::runtime_error {
 public:
  Error(ExitCode code, const std::string& msg, bool quiet = false)
      : std::runtime_error(msg), code_(code), quiet_(quiet) {}
  ExitCode code() const { return code_; }
  bool quiet() const { return quiet_; }

 private:
  ExitCode code_;
  bool quiet_;
};

// Bad command line, config or input file. The message must name the key or the file.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& msg, bool quiet = false) : Error(kExitUsage, msg, quiet) {}
};

// Non-finite loss or gradients.
class NumericalError : public Error {
 public:
  explicit NumericalError(const std::string& msg, bool quiet = false)
      : Error(kExitNumerical, msg, quiet) {}
};

namespace detail {
[[noreturn]] inline void throw_check(const char* expr, const char* file, int line,
                                     const std::string& msg) {
  std::ostringstream os;
  os << file << ":" << line << ": check failed: " << expr;
  if (!msg.empty()) os << ": " << msg;
  throw std::logic_error(os.str());
}
}  // namespace detail

}  // namespace sy

// Internal invariant (a bug if it fails, not a user error): throws std::logic_error with file:line.
#define SY_CHECK(cond, msg)                                                     \
  do {                                                                          \
    if (!(cond)) {                                                              \
      std::ostringstream sy_check_os_;                                          \
      sy_check_os_ << msg;                                                      \
      ::sy::detail::throw_check(#cond, __FILE__, __LINE__, sy_check_os_.str()); \
    }                                                                           \
  } while (0)
