#include "src/train/metrics.h"

#include <filesystem>

#include "src/core/error.h"

namespace sy {

MetricsWriter::MetricsWriter(const std::string& path, bool append) : path_(path) {
  namespace fs = std::filesystem;
  if (!append && fs::exists(path)) fs::rename(path, path + ".prev");
  out_.open(path, append ? std::ios::app : std::ios::trunc);
  if (!out_) throw UsageError("cannot open metrics file '" + path + "' for writing");
}

void MetricsWriter::write(const nlohmann::json& line) {
  out_ << line.dump() << '\n';
  out_.flush();
  if (!out_) throw std::runtime_error("writing metrics file '" + path_ + "' failed");
}

}  // namespace sy
