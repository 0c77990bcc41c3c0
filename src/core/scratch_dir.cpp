#include "src/core/scratch_dir.h"

#include <stdlib.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "src/core/error.h"

namespace sy {

namespace fs = std::filesystem;

namespace {
// The folder mkdtemp works in: $TMPDIR where set, else /tmp; a TMPDIR that is no directory is
// said in those words (std::filesystem's "temp_directory_path: No such file or directory" named
// neither).
fs::path temp_base() {
  const char* env = std::getenv("TMPDIR");
  const fs::path base = env && *env ? fs::path(env) : fs::path("/tmp");
  std::error_code ec;
  if (!fs::is_directory(base, ec))
    throw UsageError(env && *env ? "TMPDIR='" + base.string() +
                                       "' is not a directory: set it to one where scratch files "
                                       "may go, or unset it (/tmp)"
                                 : "/tmp is not a directory: set TMPDIR to one");
  return base;
}
}  // namespace

ScratchDir::ScratchDir(const std::string& prefix) {
  const fs::path base = temp_base();
  std::string tmpl = (base / (prefix + "XXXXXX")).string();
  if (!mkdtemp(tmpl.data())) {
    const std::string why = std::strerror(errno);
    throw UsageError("cannot create a scratch folder in '" + base.string() + "' (" + why +
                     "): set TMPDIR to a writable directory");
  }
  path_ = tmpl;
  folder_ = files::RemovedOnInterrupt(tmpl, files::RemovedOnInterrupt::kFolder);
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::string ScratchDir::file(const std::string& name) {
  const std::string p = (path_ / name).string();
  files_.emplace_back(p);
  return p;
}

}  // namespace sy
