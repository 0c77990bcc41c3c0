// Files that are replaced whole, so a crash or a full disk never leaves a half-written file under
// the real name: write "<path>.tmp", fsync it, rename it over <path>, fsync the directory. Plain
// POSIX, no MPI; used by checkpoints, exports, placements, co-activation and metrics files.
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "src/core/interrupt.h"
#include "src/core/unique_fd.h"

namespace sy::files {

// What `path` is when it names a device, a FIFO or a socket, itself or through a symbolic link
// ("a FIFO", paths.h's what_is_at); "" otherwise (absent, a regular file, a directory). The writers
// below rename a finished file over their output: over /dev/null that destroys the device node, so
// they refuse such a path.
std::string special_file_kind(const std::string& path);
// "'<path>' is a FIFO: switchyard writes a file next to it and renames it over the output, ..."
// when `path` is a special_file_kind; "" otherwise. What every writer refusing one says.
std::string special_file_problem(const std::string& path);

// The directory an output file `path` will be written in. UsageError naming `path` when it is
// empty, its directory is missing or not writable, a file there cannot be replaced
// (unwritable_output), or it is a directory or special_file_kind: what commands check before any
// work.
std::string check_output_file(const std::string& path);

// Why no file can be created in the directory an output `path` goes in (its parent, or the
// nearest one that exists when the writer creates the missing ones): "cannot create files in
// '<dir>': Read-only file system" (a probe file is created and removed there; permission bits,
// an immutable directory, /proc). "" when one can. What commands check before the work, so that
// minutes of tokenizing or reading a checkpoint do not end in that.
std::string unwritable_output_dir(const std::string& path);

// unwritable_output_dir, then unreplaceable_output: why the output file `path` cannot be written
// or put in place. For a real output's path (not a placeholder name in its directory).
std::string unwritable_output(const std::string& path);

// Why the file at `path` cannot be replaced by a rename over it although its directory takes
// new files: it is immutable or append-only (chattr +i / +a), or it belongs to another user in a
// sticky directory (/tmp's rule) and this process is not root. "" when it can, or nothing is
// there. The rename at the end of the work would fail with EPERM.
std::string unreplaceable_output(const std::string& path);

// fsync(2) of a file or a directory (a rename is durable once its directory is synced). Throws
// std::runtime_error naming the path and errno's text.
void fsync_path(const std::string& path);

// rename(2) of `from` to `to` (same directory), then fsync of that directory. Throws
// std::runtime_error, `from` left, when `to` is a special_file_kind.
void durable_rename(const std::string& from, const std::string& to);

// fsync of `tmp`, then durable_rename(tmp, path): the commit of a file written to `tmp`.
void commit_file(const std::string& tmp, const std::string& path);

// Replaces `path` with `text` so that a reader sees the old or the new content, never a mix
// (<path>.tmp, fsync, rename, fsync the directory). Throws std::runtime_error naming the file
// and errno's text ("No space left on device", say); the old file is then untouched.
void atomic_write_text(const std::string& path, const std::string& text);

// How a write refused because another process is writing the same output starts.
inline constexpr const char* kAnotherWriter = "another process is writing";

// "<path>.tmp", the file a writer of `path` fills before renaming it into place, held for the
// writer's lifetime: created (a stale one of a killed writer reused) and held with flock, then
// emptied, so that a second writer of the same output -- in this process or another -- is
// refused (std::runtime_error "<kAnotherWriter> '<path>' ...") instead of truncating it midway
// (the first then renamed a mix into place); and registered for removal on an interrupt
// (interrupt.h). The destructor removes the file unless renamed() was called, then lets the
// lock go. A file system without flock (ENOLCK, ENOSYS: Lustre mounted noflock) writes
// unguarded.
class HeldTmp {
 public:
  explicit HeldTmp(const std::string& path);
  ~HeldTmp();
  HeldTmp(HeldTmp&& other) noexcept = default;
  HeldTmp& operator=(HeldTmp&&) = delete;
  HeldTmp(const HeldTmp&) = delete;
  HeldTmp& operator=(const HeldTmp&) = delete;

  const std::string& path() const { return tmp_; }
  // It was renamed into place (the real file now): not removed, not ours; the lock goes.
  void renamed();

 private:
  std::string tmp_;
  UniqueFd fd_;  // invalid once moved from or renamed()
  RemovedOnInterrupt on_interrupt_;
};

// Files that replace their real names together or not at all: stage(path) hands out
// "<path>.tmp" for the caller to write; commit() fsyncs each and renames it over its path, in
// stage order. Whatever throws before commit() returns leaves nothing behind: the destructor
// removes every .tmp still there (never anything it did not create) and, with
// kCreateParents, the directories stage() created (while empty). The real files keep their old
// content unless commit() had already renamed them.
class StagedFiles {
 public:
  enum Parents { kParentsMustExist, kCreateParents };
  explicit StagedFiles(Parents parents = kParentsMustExist) : parents_(parents) {}
  ~StagedFiles();
  StagedFiles(const StagedFiles&) = delete;
  StagedFiles& operator=(const StagedFiles&) = delete;

  // Creates (truncates) "<path>.tmp", held (flock) until commit() or the destructor, and returns
  // its name. Throws std::runtime_error naming the file or the directory that cannot be created,
  // with errno's text, `path` when it is a special_file_kind, or "<kAnotherWriter> '<path>' ..."
  // when another process (or StagedFiles) holds its .tmp.
  std::string stage(const std::string& path);
  // stage(path), then `write` writes the content to a stream on it; throws naming the .tmp and
  // errno's text when the stream fails ("No space left on device", "File too large").
  void stage_stream(const std::string& path, const std::function<void(std::ostream&)>& write);
  void stage_text(const std::string& path, const std::string& text);
  // Renames every staged file over its path (commit_file). On a failure the files renamed so
  // far stay renamed and the rest are removed.
  void commit();

 private:
  struct Entry {
    std::string path;
    HeldTmp tmp;  // "<path>.tmp": no second writer of `path` meanwhile, removed on an interrupt
  };
  Parents parents_;
  std::vector<Entry> staged_;
  struct MadeDir {
    std::string path;
    RemovedOnInterrupt on_interrupt;  // removed (while empty) by a SIGINT/SIGTERM too
  };
  std::vector<MadeDir> created_dirs_;  // outermost first
  bool committed_ = false;
};

// ---- a full disk: what writers (checkpoints, token files) say when a write fails -------------

// Bytes an unprivileged writer may still use on the file system of `dir`; -1 when unknown.
int64_t free_bytes(const std::string& dir);

// "more than the file size limit (ulimit -f) of 4.9 MiB" when a file of `bytes` is past it;
// empty when it fits or there is no limit.
std::string past_file_size_limit(int64_t bytes);

// Why a file of about `bytes` cannot be written into `dir`: past the file size limit
// (ulimit -f) or more than the free space there, in words ("more than the 1.0 MiB free in 'd'
// (no space left)"); empty when it fits (or the free space is unknown). For writers that cannot
// give up a failed write cleanly (HDF5): check before starting.
std::string no_room_for(const std::string& dir, int64_t bytes);

// "12.3 MiB"
std::string mib(int64_t bytes);

// Whether a failed write most likely ran out of space: `message` says so, or the file system is
// (nearly) full: `avail` (free_bytes) below one chunk of at most 4 MiB.
bool looks_like_disk_full(const std::string& message, int64_t avail);

// A failed write of an output named by `where` ("--output 'x'"), with the writer's `message`:
// out of room (no space, a quota, the file size limit) is SPEC 9's "anything else", exit 1;
// another writer of the same output (kAnotherWriter) is exit 1 too; anything else (a path that
// cannot be created or opened) is bad input, UsageError (exit 2).
[[noreturn]] void throw_output_error(const std::string& where, const std::string& message);

}  // namespace sy::files
