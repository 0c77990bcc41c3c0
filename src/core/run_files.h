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

}  // namespace sy
