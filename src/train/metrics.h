// metrics.jsonl (SPEC section 6): one JSON object per line, flushed per line so a crash loses
// nothing already logged.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

namespace sy {

class MetricsWriter {
 public:
  // append = false starts a new file; an existing one is kept as "<path>.prev" first.
  MetricsWriter(const std::string& path, bool append);
  // Resuming at `step`: keeps the lines of steps <= step (a run killed after its last checkpoint
  // logged steps that the resumed run does again) and appends after them. The file is cut in
  // place after its last line of a step <= `step`, read back from its end (lines are appended in
  // step order, so a hand-edited file keeps what comes before that line): the cost is the bytes
  // dropped, not the run's history. UsageError when the file cannot be read or is not a file.
  MetricsWriter(const std::string& path, int64_t resume_step);
  void write(const nlohmann::json& line);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

// The "step" of the last line of the metrics file at `path` that has one (lines are appended in
// step order: the largest); 0 when it is missing, empty, unreadable or holds no step (a torn or
// foreign line is skipped).
int64_t last_logged_step(const std::string& path);

}  // namespace sy
