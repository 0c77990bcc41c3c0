// How the tests make a file "not fit" without filling a disk.
#pragma once

#include <sys/resource.h>

#include <csignal>

namespace sy::test {

// RLIMIT_FSIZE (ulimit -f) lowered to `bytes` for a scope, restored after; SIGXFSZ ignored
// meanwhile, so that a write past the limit fails (EFBIG) instead of ending the test binary.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) : old_handler_(std::signal(SIGXFSZ, SIG_IGN)) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    rlimit lower = saved_;
    lower.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &lower);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, old_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  void (*old_handler_)(int);
  rlimit saved_{};
};

}  // namespace sy::test
