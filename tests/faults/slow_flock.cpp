// Preloaded (LD_PRELOAD) into `switchyard train` by run_dirs_test.cpp: widens the window between a
// run's open of its lock file and its flock, and the time a run holds the lock before going on,
// so that two runs interleave as they can by chance (QA found the interleaving this way).
//   SY_TEST_FLOCK_MATCH=<text>     only lock files whose path holds it (default: every flock)
//   SY_TEST_FLOCK_BEFORE_S=<s>     sleep before the real flock
//   SY_TEST_FLOCK_AFTER_S=<s>      sleep after it
#include <dlfcn.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace {

void sleep_for(const char* env) {
  if (const char* s = std::getenv(env)) ::usleep(static_cast<useconds_t>(std::atof(s) * 1e6));
}

bool matches(int fd) {
  const char* match = std::getenv("SY_TEST_FLOCK_MATCH");
  if (match == nullptr) return true;
  char target[4096];
  const std::string link = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
  return n > 0 && std::string(target, static_cast<size_t>(n)).find(match) != std::string::npos;
}

}  // namespace

extern "C" int flock(int fd, int operation) {
  using Fn = int (*)(int, int);
  static const Fn real = reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, "flock"));
  const bool ours = matches(fd);
  if (ours) sleep_for("SY_TEST_FLOCK_BEFORE_S");
  const int r = real(fd, operation);
  if (ours) sleep_for("SY_TEST_FLOCK_AFTER_S");
  return r;
}
