#include "src/core/paths.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
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

void make_directories(const std::string& where, const std::string& dir) {
  const std::string named = where + " '" + shortened(dir) + "'";
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw UsageError(named + " is not a directory (" + what_is_at(dir) + " is in the way)");
  fs::create_directories(dir, ec);
  if (ec) throw UsageError(named + " cannot be created: " + ec.message());
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
