// The checkpoint directory on disk: names, durable renames, the `latest` pointer, rotation. Plain
// POSIX, no MPI: the writer calls these on rank 0 after every rank has closed the HDF5 file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sy::ckpt::files {

// fsync(2) of a file or a directory (a rename is durable once its directory is synced). Throws
// std::runtime_error naming the path and errno's text.
void fsync_path(const std::string& path);

// rename(2) of `from` to `to` (same directory), then fsync of that directory.
void durable_rename(const std::string& from, const std::string& to);

// Replaces <dir>/<name> with `text` so that a reader sees the old or the new content, never a
// mix: write <name>.tmp, fsync, rename, fsync the directory.
void atomic_write_text(const std::string& dir, const std::string& name, const std::string& text);

// The file name `latest` holds (whitespace trimmed), or nullopt when there is no `latest`.
std::optional<std::string> read_latest(const std::string& dir);

struct StepFile {
  int64_t step;
  std::string path;  // <dir>/step_<8 digits>.h5
};
// Every step_<digits>.h5 in `dir` (not *.tmp), by increasing step; empty when `dir` is absent.
std::vector<StepFile> list_step_files(const std::string& dir);
// The spare file a save holds beside <name>.h5.tmp while it writes (write.cpp).
inline constexpr const char* kSpareSuffix = ".spare";

// Every *.h5.tmp (and *.h5.tmp.spare) in `dir`: what a crashed save leaves behind.
std::vector<std::string> list_temp_files(const std::string& dir);

// After <dir>/step_<new_step>.h5 is complete: removes the step files older than the newest
// `keep` ones among those with step <= new_step (keep <= 0: none), and stale *.h5.tmp files.
// Files of a later step (a run resumed from an older checkpoint left them) are kept and named in
// `notes`. Returns the removed paths.
std::vector<std::string> rotate(const std::string& dir, int64_t new_step, int64_t keep,
                                std::vector<std::string>& notes);

}  // namespace sy::ckpt::files
