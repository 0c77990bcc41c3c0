// Files of a run directory (run.out_dir) that more than one part names: the trainer writes them,
// `switchyard plot` and `switchyard plan --routing` read them back. Here, in src/core, because
// src/plot and src/plan/io cannot depend on src/train (the trainer links them).
#pragma once

#include <filesystem>
#include <string>

namespace sy {

// <run_dir>/metrics.jsonl (SPEC section 6).
inline std::string metrics_path(const std::string& run_dir) {
  return (std::filesystem::path(run_dir) / "metrics.jsonl").string();
}

// A fresh run in a run.out_dir an earlier run wrote `path` to: that file is kept once, as
// <path>.prev (a later fresh run replaces the copy). Returns the log's note ("" when there is no
// such file); throws std::filesystem::filesystem_error when it cannot be moved.
inline std::string keep_earlier_as_prev(const std::string& path) {
  if (!std::filesystem::exists(path)) return "";
  const std::string prev = path + ".prev";
  const bool replacing = std::filesystem::exists(prev);
  std::filesystem::rename(path, prev);
  return "note: " + path + " of an earlier run in run.out_dir is kept as " + prev +
         (replacing ? " (replacing the one before it)" : "") + "\n";
}

}  // namespace sy
