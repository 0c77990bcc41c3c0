// A small token file for the tests that run `switchyard` as a process: 400 lines of English in
// <dir>/t.txt, turned into <dir>/t.h5 by `switchyard data prepare`.
#pragma once

#include <fstream>
#include <string>

#include "common/run_command.h"
#include "common/temp_dir.h"

namespace sy::test {

// Writes <dir>/t.h5 with the `switchyard` binary `bin`; the command's result (exit 0 on success).
inline CommandResult prepare_tiny_tokens(const TempDir& dir, const std::string& bin) {
  {
    std::ofstream t(dir.file("t.txt"));
    for (int i = 0; i < 400; ++i) t << "the quick brown fox jumps over the lazy dog " << i << "\n";
  }
  return run_command(bin + " data prepare --input " + dir.file("t.txt") + " --output " +
                     dir.file("t.h5"));
}

}  // namespace sy::test
