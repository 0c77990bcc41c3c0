#include "src/core/progress.h"

#include <algorithm>
#include <cstdio>

namespace sy {

std::string format_duration(double s) {
  // An ETA of train.steps near INT64_MAX steps overflowed the conversion (undefined; it printed
  // "-2562047788015215:-30:-8"; QA): past 10^6 hours, or not a number, it says so.
  if (!(s < 3.6e9)) return "over 1000000 h";
  const long t = static_cast<long>(std::max(0.0, s) + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  return buf;
}

ProgressEta::ProgressEta(int64_t total, double every_s)
    : total_(total), every_s_(every_s), start_(Clock::now()), last_(start_) {}

double ProgressEta::elapsed_s() const {
  return std::chrono::duration<double>(Clock::now() - start_).count();
}

std::optional<std::string> ProgressEta::update(int64_t done, const std::string& unit) {
  const Clock::time_point now = Clock::now();
  if (std::chrono::duration<double>(now - last_).count() < every_s_ || done <= 0 || total_ <= 0)
    return std::nullopt;
  last_ = now;
  const double frac = static_cast<double>(done) / static_cast<double>(total_);
  const double eta_s = elapsed_s() * (1.0 - frac) / frac;
  const bool mib = unit == "MiB";  // bytes shown in MiB to a tenth; any other unit: counts
  const double scale = mib ? 1.0 / 1048576.0 : 1.0;
  char buf[128];
  std::snprintf(buf, sizeof buf,
                mib ? "%.0f%% (%.1f/%.1f %s), ETA %s" : "%.0f%% (%.0f/%.0f %s), ETA %s",
                100.0 * frac, static_cast<double>(done) * scale,
                static_cast<double>(total_) * scale, unit.c_str(), format_duration(eta_s).c_str());
  return std::string(buf);
}

}  // namespace sy
