// A helper program run for a command (gnuplot for plot, the PyTorch peer for bench train): its
// standard output captured, and the program ended with this process. Run through popen(3), it
// outlived a `plot` or `bench train` stopped by SIGTERM, writing charts after the cleanup had
// run (src/core/interrupt.h) or holding the terminal's pipe.
#pragma once

#include <string>

namespace sy {

// Single quotes for /bin/sh, with embedded quotes closed, escaped and reopened.
std::string shell_quote(const std::string& s);

struct Captured {
  // The shell's status; 128 + N where signal N ended it, as a shell reports one (`timeout -k`
  // kills itself with SIGKILL: 137, which was -1, and a timed-out peer read as failed; QA);
  // -1: it did not start.
  int exit_code = -1;
  std::string output;  // its standard output (add 2>&1 to `cmd` for its errors too)
};

// Runs `cmd` with /bin/sh (exec'd in its place, so the program is the child itself) and returns
// its standard output and exit code. The child gets SIGTERM when this process dies
// (PR_SET_PDEATHSIG, kept across exec).
Captured run_captured(const std::string& cmd);

}  // namespace sy
