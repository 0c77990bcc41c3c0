// Files that are replaced whole, so a crash or a full disk never leaves a half-written file under
// the real name: write "<path>.tmp", fsync it, rename it over <path>, fsync the directory. Plain
// POSIX, no MPI; used by checkpoints, exports, placements, co-activation and metrics files.
#pragma once

#include <cstdint>
#include <string>

namespace sy::files {

// fsync(2) of a file or a directory (a rename is durable once its directory is synced). Throws
// std::runtime_error naming the path and errno's text.
void fsync_path(const std::string& path);

// rename(2) of `from` to `to` (same directory), then fsync of that directory.
void durable_rename(const std::string& from, const std::string& to);

// fsync of `tmp`, then durable_rename(tmp, path): the commit of a file written to `tmp`.
void commit_file(const std::string& tmp, const std::string& path);

// Replaces `path` with `text` so that a reader sees the old or the new content, never a mix
// (<path>.tmp, fsync, rename, fsync the directory). Throws std::runtime_error naming the file
// and errno's text ("No space left on device", say); the old file is then untouched.
void atomic_write_text(const std::string& path, const std::string& text);

// ---- a full disk: what writers (checkpoints, token files) say when a write fails -------------

// Bytes an unprivileged writer may still use on the file system of `dir`; -1 when unknown.
int64_t free_bytes(const std::string& dir);

// "12.3 MiB"
std::string mib(int64_t bytes);

// Whether a failed write most likely ran out of space: `message` says so, or the file system is
// (nearly) full: `avail` (free_bytes) below one chunk of at most 4 MiB.
bool looks_like_disk_full(const std::string& message, int64_t avail);

}  // namespace sy::files
