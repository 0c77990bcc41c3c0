#include "src/train/faults.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "src/core/unique_fd.h"

namespace sy {

std::optional<CheckpointFault> CheckpointFault::from_env() {
  const char* spec = std::getenv("SWITCHYARD_CKPT_FAULT");
  if (!spec || !*spec) return std::nullopt;
  const std::string s = spec;
  std::vector<std::string> fields;
  for (size_t at = 0;;) {
    const size_t colon = s.find(':', at);
    fields.push_back(s.substr(at, colon == std::string::npos ? std::string::npos : colon - at));
    if (colon == std::string::npos) break;
    at = colon + 1;
  }
  if (fields.size() != 3 && fields.size() != 4)
    throw std::invalid_argument("SWITCHYARD_CKPT_FAULT='" + s +
                                "': expected <rank>:<point>:<action>[:<step>]");
  CheckpointFault f;
  f.rank = std::atoi(fields[0].c_str());
  f.point = fields[1];
  f.action = fields[2];
  if (fields.size() == 4) f.step = std::atoll(fields[3].c_str());
  if (f.action != "stop" && f.action != "fail" && f.action != "fill")
    throw std::invalid_argument("SWITCHYARD_CKPT_FAULT='" + s + "': action must be stop|fail|fill");
  return f;
}

void CheckpointFault::at(int world_rank, const std::string& where, const std::string& dir,
                         int64_t at_step) const {
  if (world_rank != rank || where != point) return;
  if (step >= 0 && at_step >= 0 && step != at_step) return;
  if (action == "stop") {
    std::raise(SIGSTOP);
    return;
  }
  if (action == "fail")
    throw std::runtime_error("No space left on device (injected by SWITCHYARD_CKPT_FAULT at '" +
                             where + "')");
  struct statvfs v {};
  if (::statvfs(dir.c_str(), &v) != 0 ||
      static_cast<double>(v.f_blocks) * static_cast<double>(v.f_frsize) > 64.0 * (1 << 20))
    throw std::logic_error("SWITCHYARD_CKPT_FAULT fill: refusing to fill the file system of '" +
                           dir + "' (only one of at most 64 MiB, a test's tmpfs)");
  const std::string path = (std::filesystem::path(dir) / "ballast").string();
  const UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) throw std::runtime_error("SWITCHYARD_CKPT_FAULT fill: cannot create " + path);
  const std::vector<char> block(1 << 16, 'x');
  for (const size_t n : {65536, 4096, 256, 16, 1})  // down to single bytes: nothing may be left
    while (::write(fd.get(), block.data(), n) == static_cast<ssize_t>(n)) {
    }
}

}  // namespace sy
