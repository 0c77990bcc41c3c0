#include "src/train/metrics.h"

#include <algorithm>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
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
  int64_t end = 0;             // the byte just past it (and its newline); 0: no line stays
  int64_t step = -1;           // its step
  bool needs_newline = false;  // the file's last line, whole but without its newline
};

// Reading back from the end of `in` (`size` bytes): the last line whose step is at most `limit`.
// The lines after it -- torn (the kill came mid-write), blank, foreign, or of a later step -- are
// what a resume at `limit` drops. Lines are appended in step order (a resume drops the later ones
// before it appends), so the first line that stays ends the scan: the work is the bytes dropped,
// each searched once, not the file. A last line without its newline stays when it parses (a
// hand-trimmed file; a torn write does not parse). Throws std::runtime_error when a read fails.
LastLine last_line_up_to(std::istream& in, int64_t size, int64_t limit) {
  constexpr int64_t kBlock = 64 << 10;
  // No metrics line is longer (64 layers x 256 experts of expert_load is ~130 KB): a longer run
  // of bytes without a newline (a NUL-filled tail after a crash) is dropped without being held.
  constexpr int64_t kLongestLine = 16 << 20;
  std::vector<std::string> pieces;  // the bytes of the line being read, the last piece first
  int64_t kept = 0;                 // bytes in `pieces`
  std::string block;
  int64_t pos = size;          // the bytes [pos, size) have been read
  size_t at = 0;               // block[0, at) is not searched yet
  int64_t content_end = size;  // the line being read ends here (before its newline, if any)
  // Whether the line [start, content_end), whose bytes are `pieces`, stays (then where it ends).
  const auto judge = [&](int64_t start) -> std::optional<LastLine> {
    const bool last = content_end == size;  // the file's last bytes: no newline after them
    std::string line;
    if (content_end - start <= kLongestLine) {
      line.reserve(static_cast<size_t>(kept));
      for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) line += *it;
      if (const int64_t step = step_of_line(line); step >= 0 && step <= limit)
        return LastLine{last ? size : content_end + 1, step, last};
    }
    pieces.clear();
    kept = 0;
    return std::nullopt;
  };
  while (true) {
    if (at == 0) {
      if (pos == 0) return judge(0).value_or(LastLine{});
      const int64_t from = std::max<int64_t>(0, pos - kBlock);
      block.resize(static_cast<size_t>(pos - from));
      in.seekg(from);
      in.read(block.data(), static_cast<std::streamsize>(block.size()));
      if (!in) throw std::runtime_error(errno_text(errno));
      pos = from;
      at = block.size();
    }
    const auto nl = static_cast<const char*>(memrchr(block.data(), '\n', at));
    const size_t from = nl ? static_cast<size_t>(nl - block.data()) + 1 : 0;
    if (content_end - (pos + static_cast<int64_t>(from)) <= kLongestLine) {
      pieces.emplace_back(block, from, at - from);
      kept += static_cast<int64_t>(at - from);
    }
    if (!nl) {
      at = 0;
      continue;
    }
    const int64_t start = pos + static_cast<int64_t>(from);
    if (start < content_end || content_end != size)  // not the empty end of a file ending in \n
      if (auto kept_line = judge(start)) return *kept_line;
    pieces.clear();
    kept = 0;
    content_end = start - 1;  // the newline before it ends the line before
    at = from - 1;
  }
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
  bool needs_newline = false;
  if (fs::exists(path)) {
    // A FIFO there blocked the open for good, with no word (QA).
    if (const std::string kind = files::special_file_kind(path); !kind.empty())
      throw UsageError("metrics file '" + path + "' is " + kind + ", not a file");
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
    needs_newline = keep.needs_newline;
  }
  errno = 0;
  out_.open(path, std::ios::app);
  if (!out_)
    throw UsageError("cannot open metrics file '" + path + "' for writing: " + errno_text(errno));
  if (needs_newline) out_ << '\n';  // the kept last line's, before the next one
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
