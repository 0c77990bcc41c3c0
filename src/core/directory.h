// A directory a command writes into, created with its parents; what stands in the way is said in
// the user's terms (the key or flag that named it), not as a std::filesystem error.
#pragma once

#include <string>

namespace sy {

// What is at `path` when it is not a directory: "a regular file", "a FIFO", ...
std::string what_is_at(const std::string& path);

// Creates `dir` and its parents where missing. Throws UsageError (exit 2) "<where> '<dir>' is not
// a directory (a regular file is in the way)" or "... cannot be created: <reason>"; `where` names
// the key or flag, e.g. "run.out_dir" or "--out".
void make_directories(const std::string& where, const std::string& dir);

}  // namespace sy
