#include "src/core/paths.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

#include "src/core/error.h"
#include "src/core/printable.h"

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
                           const std::string& expected) {
  const std::string named = what + " '" + path + "'";
  std::error_code ec;
  if (!fs::exists(path, ec)) throw UsageError(named + " not found");
  if (fs::is_directory(path, ec)) throw UsageError(named + " is a directory, expected " + expected);
  if (const std::string why = unreadable_reason(path); !why.empty())
    throw UsageError(named + " " + why);
  errno = 0;  // what the open and the reads leave is theirs
  std::ifstream in(path, std::ios::binary);
  std::string text;
  if (in) text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (!in && !in.eof())
    throw UsageError(named + " cannot be read" +
                     (errno != 0 ? std::string(": ") + std::strerror(errno) : std::string()));
  return text;
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
