#include "src/train/metrics.h"

#include <algorithm>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "src/core/durable_file.h"
#include "src/core/error.h"

namespace sy {

namespace {
// errno's text after a failed stream operation (streams keep no error code of their own).
std::string errno_text(int saved) {
  return saved != 0 ? std::strerror(saved) : "the stream failed without an errno";
}
}  // namespace

MetricsWriter::MetricsWriter(const std::string& path, bool append) : path_(path) {
  namespace fs = std::filesystem;
  if (!append && fs::exists(path)) fs::rename(path, path + ".prev");
  errno = 0;
  out_.open(path, append ? std::ios::app : std::ios::trunc);
  if (!out_)
    throw UsageError("cannot open metrics file '" + path + "' for writing: " + errno_text(errno));
}

MetricsWriter::MetricsWriter(const std::string& path, int64_t resume_step) : path_(path) {
  namespace fs = std::filesystem;
  if (fs::exists(path)) {
    std::vector<std::string> keep;
    {
      // One that cannot be read (no read permission, a failing disk) is refused: read as empty,
      // the rewrite below replaced the earlier run's whole history with nothing.
      errno = 0;
      std::ifstream in(path);
      if (!in)
        throw UsageError("cannot read metrics file '" + path +
                         "' to keep its lines up to the checkpoint: " + errno_text(errno));
      for (std::string line; std::getline(in, line);) {
        const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        // A torn last line (the kill came mid-write) is dropped with the superseded steps.
        if (j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
            j["step"].get<int64_t>() <= resume_step)
          keep.push_back(line);
      }
      if (in.bad())
        throw UsageError("cannot read metrics file '" + path +
                         "' to keep its lines up to the checkpoint: " + errno_text(errno));
    }
    std::string text;
    for (const auto& line : keep) text += line + '\n';
    files::atomic_write_text(path, text);
  }
  errno = 0;
  out_.open(path, std::ios::app);
  if (!out_)
    throw UsageError("cannot open metrics file '" + path + "' for writing: " + errno_text(errno));
}

int64_t last_logged_step(const std::string& path) {
  int64_t last = 0;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("step") && j["step"].is_number_integer())
      last = std::max(last, j["step"].get<int64_t>());
  }
  return last;
}

void MetricsWriter::write(const nlohmann::json& line) {
  errno = 0;
  out_ << line.dump() << '\n';
  out_.flush();
  if (!out_)
    throw std::runtime_error("writing metrics file '" + path_ + "' failed: " + errno_text(errno));
}

}  // namespace sy
