// Progress lines with an ETA for long work: training's step lines (src/train/report.h) and data
// prepare's encoding. Plain arithmetic on a steady clock; the caller prints the lines.
//
//   ProgressEta eta(total_bytes, 5.0);           // at most one line per 5 s
//   if (auto line = eta.update(done_bytes)) say("encoding: " + *line);
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace sy {

// "01:02:03"
std::string format_duration(double seconds);

class ProgressEta {
 public:
  // `total`: the units of work (bytes, tokens); `every_s`: the least time between two lines.
  ProgressEta(int64_t total, double every_s);
  // After `done` of `total` units: "34% (4.1/12.0 MiB), ETA 00:00:12" with `unit` "MiB" scaling
  // by 2^20 (any other unit: plain counts, "34% (340/1000 tokens), ..."), once `every_s` has
  // passed since the last line (or the start); else nothing.
  std::optional<std::string> update(int64_t done, const std::string& unit = "MiB");
  // Seconds since construction.
  double elapsed_s() const;

 private:
  using Clock = std::chrono::steady_clock;
  int64_t total_;
  double every_s_;
  Clock::time_point start_, last_;
};

}  // namespace sy
