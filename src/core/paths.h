// Where a command writes: a directory created with its parents, and an output that must not be
// one of the inputs. What stands in the way is said in the user's terms (the key or flag that
// named it), not as a std::filesystem error.
#pragma once

#include <string>
#include <vector>

namespace sy {

// What is at `path` when it is not a directory: "a regular file", "a FIFO", ...
std::string what_is_at(const std::string& path);

// "cannot be read: Permission denied" when this process may not read the file at `path`; empty
// when it may. HDF5 reports such a file as no HDF5 file at all: input readers ask first.
inline constexpr const char* kCannotBeRead = "cannot be read: ";  // how the reason starts
std::string unreadable_reason(const std::string& path);

// What read_text_file takes: a regular file only (a file every rank of a job reads: a FIFO gave
// its text to one rank and held the others), or also a FIFO or terminal (a shell's <(...),
// /dev/stdin) where one process reads it.
enum class TextSource { kRegularFile, kFileOrStream };

// The whole of a small text file the user named (a config, a prompt, a cluster or placement
// file), `what` naming it in messages ("config file", "--prompt-file"). Throws UsageError
// "<what> '<path>' not found", "... is a directory, expected <expected>", "... is a FIFO,
// expected <expected> (a regular file)", "... cannot be read: <reason>", or "... holds more than
// 64 MiB" (a device such as /dev/zero was read until memory ran out).
std::string read_text_file(const std::string& path, const std::string& what,
                           const std::string& expected,
                           TextSource source = TextSource::kRegularFile);

// Creates `dir` and its parents where missing. Throws UsageError (exit 2) "<where> '<dir>' is not
// a directory (a regular file is in the way)" or "... cannot be created: <reason>"; `where` names
// the key or flag, e.g. "run.out_dir" or "--out". `created`, when given, receives the directories
// this call made, deepest first, as paths that name them (a/b/../c makes a, a/b and a/c: all
// three are listed, a/c as "a/b/../c"), so that a caller can remove them again.
void make_directories(const std::string& where, const std::string& dir,
                      std::vector<std::string>* created = nullptr);

// Throws UsageError "<command>: <flag> '<output>' is the input file '<input>': writing <what>
// would overwrite it; ..." when the two name the same file (also through a link or ./).
void refuse_output_as_input(const std::string& output, const std::string& input,
                            const std::string& command, const std::string& what,
                            const std::string& flag = "--output");

}  // namespace sy
