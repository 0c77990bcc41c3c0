// A private folder under $TMPDIR (or /tmp) for a command's working files (gnuplot's data and
// script, a config for a peer process): made with mkdtemp, removed with its content when the
// owner goes out of scope, and on SIGINT/SIGTERM/SIGHUP (interrupt.h) with the files handed out
// by file().
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "src/core/interrupt.h"

namespace sy {

class ScratchDir {
 public:
  // "<tmp>/<prefix>XXXXXX". Throws UsageError naming TMPDIR when it is not a directory one can
  // create folders in, std::runtime_error for any other failure.
  explicit ScratchDir(const std::string& prefix);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  // The path of `name` inside the folder (registered for removal on an interrupt).
  std::string file(const std::string& name);
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  files::RemovedOnInterrupt folder_;
  std::vector<files::RemovedOnInterrupt> files_;
};

}  // namespace sy
