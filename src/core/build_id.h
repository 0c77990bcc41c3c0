// Which switchyard this is: its version and the commit it was built from, e.g. "0.1.0 (commit
// 649029e1a2b3-dirty)" ("unknown" outside a git checkout). `--version` prints it and a training
// run's log opens with it, so that a run whose binary was upgraded between jobs says which
// build wrote which steps. Defined in a file the build writes (cmake/build_id.cmake).
#pragma once

#include <string>

namespace sy {

const char* build_id();

// "switchyard <build_id()>": what `--version` prints, a run's log opens with and a checkpoint's
// `written_by` holds.
inline std::string build_name() {
  return std::string("switchyard ") + build_id();
}

}  // namespace sy
