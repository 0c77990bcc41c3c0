#include "src/core/paths.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

#include "src/core/error.h"
#include "src/core/printable.h"
#include "src/core/unique_fd.h"

namespace sy {

namespace fs = std::filesystem;

std::string what_is_at(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  switch (st.type()) {
    case fs::file_type::regular:
      return "a regular file";
    case fs::file_type::fifo:
      return "a FIFO";
    case fs::file_type::socket:
      return "a socket";
    case fs::file_type::block:
    case fs::file_type::character:
      return "a device";
    default:
      return "something that is not a directory";
  }
}

std::string unreadable_reason(const std::string& path) {
  if (::access(path.c_str(), R_OK) == 0) return "";
  return std::string(kCannotBeRead) + std::strerror(errno);
}

std::string read_text_file(const std::string& path, const std::string& what,
                           const std::string& expected, TextSource source) {
  constexpr size_t kMaxBytes = size_t{64} << 20;  // past any config, prompt or placement file
  const std::string named = what + " '" + path + "'";
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) throw UsageError(named + " not found");
  if (fs::is_directory(st)) throw UsageError(named + " is a directory, expected " + expected);
  const bool stream = fs::is_fifo(st) || fs::is_character_file(st);
  if (!fs::is_regular_file(st) && !(stream && source == TextSource::kFileOrStream))
    throw UsageError(named + " is " + what_is_at(path) + ", expected " + expected +
                     " (a regular file)");
  // open(2) says a file this process may not read: "cannot be read: Permission denied".
  const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) throw UsageError(named + " " + kCannotBeRead + std::strerror(errno));
  std::string text;
  std::array<char, 1 << 16> buf;
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n == 0) return text;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw UsageError(named + " " + kCannotBeRead + std::strerror(errno));
    if (text.size() + static_cast<size_t>(n) > kMaxBytes)
      throw UsageError(named + " holds more than 64 MiB: not " + expected);
    text.append(buf.data(), static_cast<size_t>(n));
  }
}

void make_directories(const std::string& where, const std::string& dir,
                      std::vector<std::string>* created) {
  const std::string named = where + " '" + shortened(dir) + "'";
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw UsageError(named + " is not a directory (" + what_is_at(dir) + " is in the way)");
  if (!created) {
    fs::create_directories(dir, ec);
    if (ec) throw UsageError(named + " cannot be created: " + ec.message());
    return;
  }
  // One component at a time, as the file system resolves them (through "..", symlinks), noting
  // each one made here; one made meanwhile by another process is not this call's.
  fs::path at;
  std::vector<std::string> made;
  for (const fs::path& part : fs::path(dir)) {
    at /= part;
    if (part.empty() || fs::is_directory(at, ec)) continue;
    std::string why;
    if (fs::exists(at, ec))  // a file where a directory of the path belongs (create_directories
                             // said "Not a directory" of the path; create_directory "File exists")
      why =
          std::strerror(ENOTDIR) + std::string(" (") + what_is_at(at.string()) + " is in the way)";
    else if (fs::create_directory(at, ec))
      made.push_back(at.string());
    if (why.empty() && (ec || !fs::is_directory(at, ec)))
      why = ec ? ec.message() : what_is_at(at.string()) + " is in the way";
    if (!why.empty()) {
      created->assign(made.rbegin(), made.rend());  // the caller may remove those
      throw UsageError(named + " cannot be created: " + why);
    }
  }
  created->assign(made.rbegin(), made.rend());
}

void refuse_output_as_input(const std::string& output, const std::string& input,
                            const std::string& command, const std::string& what,
                            const std::string& flag) {
  std::error_code ec;
  if (fs::equivalent(output, input, ec))
    throw UsageError(command + ": " + flag + " '" + output + "' is the input file '" + input +
                     "': writing " + what + " would overwrite it; choose another output name");
}

}  // namespace sy
