// The checkpoint directory on disk: names, the `latest` pointer, rotation (durable renames are
// src/core/durable_file.h). Plain POSIX, no MPI: the writer calls these on rank 0 after every
// rank has closed the HDF5 file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sy::ckpt::files {

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

// Removes every list_temp_files of `dir`; returns the removed paths. Before a save: the trainer
// holds checkpoint.dir's lock, so they are a killed writer's, whose reservation (fallocate)
// still holds the whole file's size on disk although it looks small.
std::vector<std::string> remove_temp_files(const std::string& dir);

// After <dir>/step_<new_step>.h5 is complete: removes the step files older than the newest
// `keep` ones among those with step <= new_step (keep <= 0: none).
// Files of a later step (a run resumed from an older checkpoint left them) are kept and named in
// `notes`. Returns the removed paths.
std::vector<std::string> rotate(const std::string& dir, int64_t new_step, int64_t keep,
                                std::vector<std::string>& notes);

// The suffix a checkpoint whose weights gave a non-finite loss gets (set_aside): out of
// list_step_files, so --resume auto no longer takes it, and kept for a look.
inline constexpr const char* kNonFiniteSuffix = ".nonfinite";

// After a numerical failure (SPEC 9: "last good checkpoint kept") whose weights are those of
// <dir>/step_<step>.h5: renames it to <name>.nonfinite and, where `latest` names it, points
// `latest` at the last of `previous` (the steps of the run's earlier checkpoints in `dir`, oldest
// first: the one it resumed from, those it wrote) whose file is still there, or removes `latest`.
// Not simply the newest step file below: after a resume from an older checkpoint, that can be of
// a line of checkpoints the user went back past. Returns what it did as one sentence for the
// failure's message; "" when there is no such file. Never throws: a file it cannot rename is said
// in the sentence.
std::string set_aside(const std::string& dir, int64_t step, const std::vector<int64_t>& previous);
// Every step_<digits>.h5.nonfinite in `dir`, by name.
std::vector<std::string> list_set_aside(const std::string& dir);

}  // namespace sy::ckpt::files
