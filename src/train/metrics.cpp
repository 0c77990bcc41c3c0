#include "src/train/metrics.h"

#include <algorithm>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
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

namespace {

// The step of a metrics line, or -1 for a torn or foreign one (not JSON, no integer "step").
int64_t step_of_line(const std::string& line) {
  const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  return j.is_object() && j.contains("step") && j["step"].is_number_integer()
             ? j["step"].get<int64_t>()
             : -1;
}

struct LastLine {
  int64_t end = 0;    // the byte just past its newline; 0: no line stays
  int64_t step = -1;  // its step
};

// Reading back from the end of `in` (`size` bytes): the last complete line whose step is at most
// `limit`. The lines after it -- torn (the kill came mid-write: no newline), foreign, or of a
// later step -- are what a resume at `limit` drops. Lines are appended in step order (a resume
// drops the later ones before it appends), so the first line that stays ends the scan: the work
// is the lines dropped, not the file. Throws std::runtime_error when a read fails.
LastLine last_line_up_to(std::istream& in, int64_t size, int64_t limit) {
  constexpr int64_t kBlock = 64 << 10;
  std::string tail;  // the file's bytes [base, size)
  int64_t base = size;
  const auto load = [&] {  // one more block before `base`
    const int64_t from = std::max<int64_t>(0, base - kBlock);
    std::string block(static_cast<size_t>(base - from), '\0');
    in.seekg(from);
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    if (!in) throw std::runtime_error(errno_text(errno));
    tail.insert(0, block);
    base = from;
  };
  for (int64_t end = size; end > 0;) {
    // The line that ends at `end` starts after the newline before its last byte, or at 0.
    int64_t start = -1;
    while (start < 0) {
      if (base > end - 2 && base > 0) {
        load();
        continue;
      }
      const size_t last = static_cast<size_t>(end - 1 - base);
      const size_t nl = last > 0 ? tail.rfind('\n', last - 1) : std::string::npos;
      if (nl != std::string::npos)
        start = base + static_cast<int64_t>(nl) + 1;
      else if (base == 0)
        start = 0;
      else
        load();
    }
    std::string line =
        tail.substr(static_cast<size_t>(start - base), static_cast<size_t>(end - start));
    if (line.back() == '\n') {  // complete
      line.pop_back();
      if (const int64_t step = step_of_line(line); step >= 0 && step <= limit) return {end, step};
    }
    end = start;
  }
  return {};
}

LastLine last_line_of(const std::string& path, int64_t limit) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(errno_text(errno));
  return last_line_up_to(in, static_cast<int64_t>(std::filesystem::file_size(path)), limit);
}

}  // namespace

MetricsWriter::MetricsWriter(const std::string& path, int64_t resume_step) : path_(path) {
  namespace fs = std::filesystem;
  if (fs::exists(path)) {
    // One that cannot be read (no read permission, a failing disk) is refused: read as empty, the
    // earlier run's whole history was replaced with nothing.
    LastLine keep;
    try {
      keep = last_line_of(path, resume_step);
    } catch (const std::exception& e) {
      throw UsageError("cannot read metrics file '" + path +
                       "' to keep its lines up to the checkpoint: " + e.what());
    }
    // Cut in place after the last line that stays: the file was read whole into memory and
    // written again, which for a long run's file took GBs and ran past parallel.timeout_s while
    // the other ranks waited (QA: 227 MB held 535 MiB and 8 s).
    if (keep.end < static_cast<int64_t>(fs::file_size(path))) {
      fs::resize_file(path, static_cast<uintmax_t>(keep.end));
      files::fsync_path(path);
    }
  }
  errno = 0;
  out_.open(path, std::ios::app);
  if (!out_)
    throw UsageError("cannot open metrics file '" + path + "' for writing: " + errno_text(errno));
}

int64_t last_logged_step(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return 0;
  try {
    return std::max<int64_t>(0, last_line_of(path, std::numeric_limits<int64_t>::max()).step);
  } catch (const std::exception&) {
    return 0;  // a note's figure: the resume reads the file again and says what fails
  }
}

void MetricsWriter::write(const nlohmann::json& line) {
  errno = 0;
  out_ << line.dump() << '\n';
  out_.flush();
  if (!out_)
    throw std::runtime_error("writing metrics file '" + path_ + "' failed: " + errno_text(errno));
}

}  // namespace sy
