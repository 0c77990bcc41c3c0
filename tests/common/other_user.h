// Running a command as another user (nobody, 65534) for the permission tests: root only (CI runs
// as root), through setpriv. What it runs must be reachable by that user whatever the checkout's
// permissions (a `mktemp -d` clone is 0700): the binary and the config are copied into the
// test's directory, which is opened to every user (the test hands its files over itself).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>

namespace sy::test {

struct OtherUser {
  std::string prefix;  // "setpriv ... " in front of a command
  std::string bin;     // the copy of the switchyard binary
  std::string config;  // the copy of the config
};

// nullopt where this process is not root or setpriv is missing (the caller skips).
inline std::optional<OtherUser> as_nobody(const std::filesystem::path& dir, const std::string& bin,
                                          const std::string& config) {
  namespace fs = std::filesystem;
  if (::geteuid() != 0 || !fs::exists("/usr/bin/setpriv")) return std::nullopt;
  OtherUser u{"setpriv --reuid=65534 --regid=65534 --clear-groups ", (dir / "switchyard").string(),
              (dir / "config.yaml").string()};
  fs::copy_file(bin, u.bin, fs::copy_options::overwrite_existing);
  fs::copy_file(config, u.config, fs::copy_options::overwrite_existing);
  const auto open = fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                    fs::perms::others_read | fs::perms::others_exec;
  fs::permissions(u.bin, open);
  fs::permissions(u.config, open);
  fs::permissions(dir, open);
  return u;
}

}  // namespace sy::test
