#include "src/core/durable_file.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <utility>

#include "src/core/error.h"
#include "src/core/paths.h"

namespace sy::files {

namespace fs = std::filesystem;

namespace {
[[noreturn]] void throw_errno(const std::string& what, const std::string& path) {
  throw std::runtime_error(what + " '" + path + "' failed: " + std::strerror(errno));
}

std::string parent_dir(const std::string& path) {
  const fs::path p = fs::path(path).parent_path();
  return p.empty() ? "." : p.string();
}
}  // namespace

std::string special_file_kind(const std::string& path) {
  std::error_code ec;
  // What the path names, through a link too: /dev/stdout is a link to /proc/self/fd/1, and a
  // rename over it replaces the link.
  switch (fs::status(path, ec).type()) {
    case fs::file_type::fifo:
    case fs::file_type::socket:
    case fs::file_type::block:
    case fs::file_type::character:
      return what_is_at(path);
    default:
      return "";
  }
}

std::string special_file_problem(const std::string& path) {
  const std::string kind = special_file_kind(path);
  if (kind.empty()) return "";
  return "'" + path + "' is " + kind +
         ": switchyard writes a file next to it and renames it over the output, which would "
         "replace the " +
         kind.substr(kind.find(' ') + 1) + "; give a file name";
}

std::string check_output_file(const std::string& path) {
  if (path.empty()) throw UsageError("no output file given");
  std::error_code ec;
  const fs::path out_path(path);
  const fs::path out_dir = out_path.has_parent_path() ? out_path.parent_path() : fs::path(".");
  if (!fs::is_directory(out_dir, ec))
    throw UsageError("output directory '" + out_dir.string() + "' for '" + path + "' " +
                     (fs::exists(out_dir, ec)
                          ? "is not a directory (" + what_is_at(out_dir) + " is in the way)"
                          : std::string("does not exist")));
  if (fs::is_directory(out_path, ec))
    throw UsageError("output '" + path + "' is a directory, expected a file name");
  if (const std::string problem = special_file_problem(path); !problem.empty())
    throw UsageError("output " + problem);
  if (const std::string problem = unwritable_output(path); !problem.empty())
    throw UsageError("output '" + path + "': " + problem);
  return out_dir.string();
}

std::string unwritable_output_dir(const std::string& path) {
  std::error_code ec;
  fs::path dir = fs::path(path).parent_path();
  while (!dir.empty() && !fs::exists(dir, ec)) dir = dir.parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir, ec)) return "";  // the writer names what is in the way
  const std::string probe = (dir / (".switchyard-probe-" + std::to_string(::getpid()))).string();
  const UniqueFd fd(::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    if (errno == EEXIST) return "";  // a probe of this pid's: the directory takes files
    return "cannot create files in '" + dir.string() + "': " + std::strerror(errno);
  }
  ::unlink(probe.c_str());
  return "";
}

std::string unwritable_output(const std::string& path) {
  if (std::string problem = unwritable_output_dir(path); !problem.empty()) return problem;
  return unreplaceable_output(path);
}

std::string unreplaceable_output(const std::string& path) {
  struct stat file {};
  if (::lstat(path.c_str(), &file) != 0 || S_ISDIR(file.st_mode)) return "";
  if (S_ISREG(file.st_mode)) {
    const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW));
    if (fd.valid()) {
      int flags = 0;
      const bool known = ::ioctl(fd.get(), FS_IOC_GETFLAGS, &flags) == 0;  // not everywhere
      if (known && (flags & (FS_IMMUTABLE_FL | FS_APPEND_FL)))
        return "'" + path + "' is " +
               ((flags & FS_IMMUTABLE_FL) ? "immutable (chattr +i)" : "append-only (chattr +a)") +
               ": it cannot be replaced; remove the flag or give another name";
    }
  }
  struct stat dir {};
  const uid_t me = ::geteuid();
  if (me != 0 && ::stat(parent_dir(path).c_str(), &dir) == 0 && (dir.st_mode & S_ISVTX) &&
      me != file.st_uid && me != dir.st_uid)
    return "'" + path + "' belongs to another user (uid " + std::to_string(file.st_uid) +
           ") in the sticky directory '" + parent_dir(path) +
           "': it cannot be replaced; give another name";
  return "";
}

void fsync_path(const std::string& path) {
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) throw_errno("open for fsync of", path);
  if (::fsync(fd.get()) != 0) throw_errno("fsync of", path);
}

void durable_rename(const std::string& from, const std::string& to) {
  if (const std::string problem = special_file_problem(to); !problem.empty())
    throw std::runtime_error(problem);
  if (std::rename(from.c_str(), to.c_str()) != 0) throw_errno("rename to '" + to + "' of", from);
  fsync_path(parent_dir(to));
}

void commit_file(const std::string& tmp, const std::string& path) {
  fsync_path(tmp);
  durable_rename(tmp, path);
}

void atomic_write_text(const std::string& path, const std::string& text) {
  StagedFiles staged;
  staged.stage_text(path, text);
  staged.commit();
}

StagedFiles::~StagedFiles() {
  staged_.clear();  // the .tmp files still there go first (HeldTmp), then the folders made
  if (!committed_)
    for (auto it = created_dirs_.rbegin(); it != created_dirs_.rend(); ++it)
      ::rmdir(it->path.c_str());  // only while empty
}

HeldTmp::HeldTmp(const std::string& path) : tmp_(path + ".tmp") {
  // The lock is on the file the name holds at that moment: one renamed away by its writer
  // meanwhile (now the output itself) is let go and the name opened again.
  for (;;) {
    UniqueFd fd(::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0666));
    if (!fd.valid()) throw_errno("create", tmp_);
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
      throw std::runtime_error(std::string(kAnotherWriter) + " '" + path + "' (it holds '" + tmp_ +
                               "'); wait for it to finish, or give another output name");
    }  // a file system without flock writes unguarded
    struct stat held {
    }, named{};
    if (::fstat(fd.get(), &held) == 0 && ::stat(tmp_.c_str(), &named) == 0 &&
        held.st_dev == named.st_dev && held.st_ino == named.st_ino) {
      on_interrupt_ = RemovedOnInterrupt(tmp_);  // ours from here (never another writer's)
      if (::ftruncate(fd.get(), 0) != 0) {
        const int saved = errno;
        fd.reset();
        ::unlink(tmp_.c_str());
        errno = saved;
        throw_errno("truncate", tmp_);
      }
      fd_ = std::move(fd);
      return;
    }
    // Renamed (or removed) before the lock was had: try the name again.
  }
}

HeldTmp::~HeldTmp() {
  if (!fd_.valid()) return;  // moved from, or renamed()
  ::unlink(tmp_.c_str());    // while still held: no other writer has it yet
}

void HeldTmp::renamed() {
  on_interrupt_ = RemovedOnInterrupt();
  fd_.reset();
}

std::string StagedFiles::stage(const std::string& path) {
  for (const std::string& p : {path, path + ".tmp"})  // opening a FIFO to write blocks
    if (const std::string problem = special_file_problem(p); !problem.empty())
      throw std::runtime_error(problem);
  if (parents_ == kCreateParents) {
    std::vector<fs::path> missing;  // innermost first
    std::error_code ec;
    for (fs::path d = fs::path(path).parent_path(); !d.empty() && !fs::exists(d, ec);
         d = d.parent_path())
      missing.push_back(d);
    for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
      if (!fs::create_directory(*it, ec) && ec)
        throw std::runtime_error("create directory '" + it->string() + "' failed: " + ec.message());
      created_dirs_.push_back(
          {it->string(), RemovedOnInterrupt(it->string(), RemovedOnInterrupt::kFolder)});
    }
  }
  staged_.push_back({path, HeldTmp(path)});
  return staged_.back().tmp.path();
}

void StagedFiles::stage_stream(const std::string& path,
                               const std::function<void(std::ostream&)>& write) {
  const std::string tmp = stage(path);
  errno = 0;
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  write(out);
  out.flush();
  if (!out) throw_errno("write", tmp);
}

void StagedFiles::stage_text(const std::string& path, const std::string& text) {
  stage_stream(path, [&](std::ostream& out) { out << text; });
}

void StagedFiles::commit() {
  for (Entry& e : staged_) {
    commit_file(e.tmp.path(), e.path);
    e.tmp.renamed();  // the real file now; the lock goes with it
  }
  committed_ = true;
}

int64_t free_bytes(const std::string& dir) {
  struct statvfs v {};
  if (::statvfs(dir.c_str(), &v) != 0) return -1;
  return static_cast<int64_t>(v.f_bavail) * static_cast<int64_t>(v.f_frsize);
}

std::string past_file_size_limit(int64_t bytes) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_FSIZE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY &&
      static_cast<double>(bytes) > static_cast<double>(limit.rlim_cur))
    return "more than the file size limit (ulimit -f) of " +
           mib(static_cast<int64_t>(limit.rlim_cur));
  return "";
}

std::string no_room_for(const std::string& dir, int64_t bytes) {
  if (std::string why = past_file_size_limit(bytes); !why.empty()) return why;
  const int64_t avail = free_bytes(dir);
  if (avail >= 0 && bytes > avail)
    return "more than the " + mib(avail) + " free in '" + dir + "' (no space left)";
  return "";
}

std::string mib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

bool looks_like_disk_full(const std::string& message, int64_t avail) {
  for (const char* m : {"No space left", "MPI_ERR_NO_SPACE", "ENOSPC", "Disk quota"})
    if (message.find(m) != std::string::npos) return true;
  return avail >= 0 && avail < (int64_t{5} << 20);
}

void throw_output_error(const std::string& where, const std::string& message) {
  const std::string text = where + ": " + message;
  if (looks_like_disk_full(message, -1) || message.find("File too large") != std::string::npos ||
      message.find(kAnotherWriter) != std::string::npos)
    throw Error(kExitOther, text);
  throw UsageError(text);
}

}  // namespace sy::files
