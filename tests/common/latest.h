// The file name a checkpoint directory's `latest` pointer holds (SPEC 5), for tests of what
// changes it.
#pragma once

#include <fstream>
#include <string>

namespace sy::test {

// The name in <dir>/latest, or "(none)" when there is no such file.
inline std::string latest_in(const std::string& dir) {
  std::ifstream in(dir + "/latest");
  std::string name;
  in >> name;
  return in ? name : "(none)";
}

}  // namespace sy::test
