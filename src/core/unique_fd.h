// An owned POSIX file descriptor: closed when its owner goes, so that no early return or
// exception between an open(2) and its close(2) leaks it (the lock files, the checkpoint's
// reservation, the .tmp files a writer holds).
#pragma once

#include <unistd.h>

#include <cerrno>
#include <utility>

namespace sy {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}  // takes a descriptor open(2) returned, -1 included
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Closes it now. errno is kept: callers report the errno of the call before, not close(2)'s.
  void reset() noexcept {
    if (fd_ < 0) return;
    const int saved = errno;
    ::close(fd_);
    errno = saved;
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

}  // namespace sy
