// src/core/unique_fd.h: a descriptor is closed exactly once, by whoever owns it last, and
// closing it does not change the errno a caller is about to report. Checked against the kernel:
// fcntl(F_GETFD) on a closed descriptor fails with EBADF.
#include "src/core/unique_fd.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <utility>

namespace {

bool is_open(int fd) {
  return ::fcntl(fd, F_GETFD) != -1;
}

int open_null() {
  const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0);
  return fd;
}

TEST(UniqueFd, ClosesWhenItsOwnerGoes) {
  int raw = -1;
  {
    const sy::UniqueFd fd(open_null());
    raw = fd.get();
    EXPECT_TRUE(fd.valid());
    EXPECT_TRUE(is_open(raw));
  }
  EXPECT_FALSE(is_open(raw));
}

TEST(UniqueFd, AMoveHandsItOnAndTheOldOwnerClosesNothing) {
  sy::UniqueFd first(open_null());
  const int raw = first.get();
  sy::UniqueFd second(std::move(first));
  EXPECT_FALSE(first.valid());
  first.reset();  // a moved-from owner closes nothing
  EXPECT_TRUE(is_open(raw));
  EXPECT_EQ(second.get(), raw);

  sy::UniqueFd third(open_null());
  const int other = third.get();
  third = std::move(second);  // the descriptor third held is closed, raw lives on in third
  EXPECT_FALSE(is_open(other));
  EXPECT_TRUE(is_open(raw));
  third.reset();
  EXPECT_FALSE(is_open(raw));
  EXPECT_FALSE(third.valid());
}

TEST(UniqueFd, AFailedOpenIsHeldAsInvalidAndClosingKeepsErrno) {
  const sy::UniqueFd missing(::open("/nonexistent-switchyard-dir/x", O_RDONLY | O_CLOEXEC));
  EXPECT_FALSE(missing.valid());
  EXPECT_EQ(errno, ENOENT);

  sy::UniqueFd fd(open_null());
  errno = ENOSPC;  // what the caller read from the call before the close
  fd.reset();
  EXPECT_EQ(errno, ENOSPC);
}

}  // namespace
