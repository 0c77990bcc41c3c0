// The run's directories, checked and claimed before any work (issue 15, items 7 and 9).
//
// Rank 0 makes run.out_dir and checkpoint.dir (a single lock when they are the same directory)
// and takes an exclusive lock on each: flock(2) on `<dir>/.switchyard.lock`, a file that names
// the holder ("host H pid P since <UTC time>"). So
//   - a directory that cannot be used (a regular file in the way, a name too long, read-only,
//     no permission) is exit 2 naming the key and the reason at start, not a bare filesystem
//     error after checkpoint.every steps of work;
//   - a second run in the same directory is exit 2 naming the directory and the run that holds
//     it, instead of two runs overwriting each other's `.tmp` checkpoints and metrics lines;
//   - the lock of a run that died is free (the kernel drops a flock with its process); the next
//     run takes it over and says whose it was. On a file system without flock (some network
//     mounts) the run goes on with a warning.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/core/unique_fd.h"

namespace sy {

class RunDirs {
 public:
  // Probes and locks both directories of `cfg`; notes (a lock taken over, a file system without
  // locks) go to `log`. Throws UsageError naming the key (run.out_dir, checkpoint.dir).
  RunDirs(const Config& cfg, std::ostream& log);
  // Empties the lock files (a clean end leaves no holder named) and releases the locks. A run
  // that wrote nothing (refused after the claim: a --resume file that is no checkpoint of this
  // model) leaves nothing either: a directory holding only a lock file
  // this run created loses it, and so is removed where this run created it (with the parents it
  // created, each only while empty). QA: such runs left runs/<name>/, its checkpoints/ and two
  // lock files behind.
  ~RunDirs();
  RunDirs(const RunDirs&) = delete;
  RunDirs& operator=(const RunDirs&) = delete;

  static constexpr const char* kLockName = ".switchyard.lock";

 private:
  struct Held {
    std::string path;                  // the lock file, canonical
    UniqueFd fd;                       // flock(2) held while open
    bool created_lock = false;         // the lock file was not there before this run
    std::vector<std::string> created;  // directories this run made, deepest first
  };
  void claim(const std::string& key, const std::string& dir, std::ostream& log);
  void release();
  std::vector<Held> held_;
};

}  // namespace sy
