#include "src/train/run_dirs.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <ostream>
#include <utility>
#include <vector>

#include "src/core/error.h"
#include "src/core/paths.h"
#include "src/core/printable.h"

namespace sy {

namespace {

namespace fs = std::filesystem;

std::string holder_text() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "?");
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char when[64];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return "host " + std::string(host) + " pid " + std::to_string(::getpid()) + " since " + when;
}

// Whether `dir` holds nothing but the lock file (false where it cannot be read: nothing is
// removed then). Not throwing: it runs in the destructor.
bool holds_only_the_lock(const std::string& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename() != RunDirs::kLockName) return false;
  return !ec;
}

// Whether the open file `fd` is still the one at `path` (not unlinked or replaced meanwhile).
bool still_at(int fd, const std::string& path) {
  struct stat open_st {};
  struct stat path_st {};
  return ::fstat(fd, &open_st) == 0 && ::stat(path.c_str(), &path_st) == 0 &&
         open_st.st_dev == path_st.st_dev && open_st.st_ino == path_st.st_ino;
}

std::string read_all(int fd) {
  std::string text;
  char buf[512];
  ssize_t n;
  off_t at = 0;
  while ((n = ::pread(fd, buf, sizeof buf, at)) > 0 && text.size() < 4096) {
    text.append(buf, static_cast<size_t>(n));
    at += n;
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

RunDirs::RunDirs(const Config& cfg, std::ostream& log) {
  try {
    claim("run.out_dir", cfg.run.out_dir, log);
    claim("checkpoint.dir", cfg.checkpoint.dir, log);
  } catch (...) {
    release();  // the constructor did not finish: no destructor will
    throw;
  }
}

RunDirs::~RunDirs() {
  release();
}

void RunDirs::release() {
  // The deeper directory first: either may lie inside the other.
  std::sort(held_.begin(), held_.end(),
            [](const Held& a, const Held& b) { return a.path.size() > b.path.size(); });
  std::vector<std::string> made;  // by claims whose directory this run leaves empty
  for (auto h = held_.begin(); h != held_.end(); ++h) {
    const std::string dir = fs::path(h->path).parent_path().string();
    if (h->created_lock && holds_only_the_lock(dir)) {
      // Unlinked while still locked, so no other run takes it in between.
      std::error_code ec;
      fs::remove(h->path, ec);
      h->fd.reset();
      // Its directories now, so that the shallower claim's finds its own empty; those still
      // holding something are tried again below.
      for (const std::string& d : h->created)
        if (!fs::remove(d, ec)) made.push_back(d);
      continue;
    }
    if (::ftruncate(h->fd.get(), 0) != 0) {
      // Nothing to do: the lock goes with the descriptor, the stale holder line is harmless.
    }
  }
  held_.clear();  // closes them: the locks go
  // Then the directories those claims made that were not empty yet, each only while empty
  // (fs::remove does not remove a non-empty one), in rounds: one claim's may hold the other's
  // lock (a checkpoint.dir made as a parent of run.out_dir), so each round may empty one more.
  for (bool progress = true; progress && !made.empty();) {
    progress = false;
    for (auto d = made.begin(); d != made.end();) {
      std::error_code ec;
      if (fs::remove(*d, ec)) {
        d = made.erase(d);
        progress = true;
      } else {
        ++d;
      }
    }
  }
}

void RunDirs::claim(const std::string& key, const std::string& dir, std::ostream& log) {
  const std::string where = key + " '" + dir + "'";
  const std::string lock = (fs::path(dir) / kLockName).string();
  std::vector<std::string> created;
  std::string canonical;
  UniqueFd owned;
  bool created_lock = false;
  int locked = -1, lock_errno = 0;  // flock's result
  // A run that ends having written nothing removes its lock file and the directories it made
  // (release): a lock opened just before that is no longer the file at the path, and its flock
  // would let this run in beside a third. So the lock taken is checked to be the file at the
  // path, else taken again (and the directories made again).
  for (int attempt = 0;; ++attempt) {
    std::vector<std::string> made;
    make_directories(key, dir, &made);
    created.insert(created.begin(), made.begin(), made.end());
    std::error_code ec;
    if (attempt == 0) {
      canonical = fs::weakly_canonical(lock, ec).string();
      for (const Held& h : held_)
        if (h.path == canonical) return;  // the same directory under both keys: one lock
    }
    created_lock = !fs::exists(lock, ec);
    owned = UniqueFd(::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (owned.get() < 0 && errno == ENOENT && attempt < 10) continue;  // its directory went
    if (owned.get() < 0)
      throw UsageError(where + " is not writable (opening " + lock + ": " + std::strerror(errno) +
                       ")");
    locked = ::flock(owned.get(), LOCK_EX | LOCK_NB);
    lock_errno = errno;
    if (locked != 0 || still_at(owned.get(), lock) || attempt >= 10) break;
  }
  const int fd = owned.get();
  if (locked != 0) {
    const int err = lock_errno;
    if (err == EWOULDBLOCK) {
      std::string holder = printable(read_all(fd));  // whatever the file holds, shown safely
      if (holder.empty()) holder = "its holder did not say who it is";
      throw UsageError(where + " is in use by another switchyard run (" + holder + "; lock file " +
                       lock + "). Wait for it to end, or give this run its own " + key);
    }
    // ENOLCK, EINVAL, ENOTSUP: a file system without flock. Go on, unprotected, and say so.
    log << "warning: " << where << ": cannot lock " << lock << " (" << std::strerror(err)
        << "); a second run in this directory would not be stopped\n";
  } else {
    const std::string previous = printable(read_all(fd));
    if (!previous.empty())
      log << "note: " << where << ": taking over the lock of a run that ended without releasing "
          << "it (" << previous << ")\n";
  }
  held_.push_back({canonical, std::move(owned), created_lock, std::move(created)});
  const std::string text = holder_text() + "\n";
  // Synced: the other ranks read this line to know they see this directory (a shared
  // checkpoint.dir, loop_common.h), and NFS shows another node a write only after fsync or close.
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()) ||
      ::fsync(fd) != 0)
    throw UsageError(where + " is not writable (writing " + lock + ": " + std::strerror(errno) +
                     ")");
}

}  // namespace sy
