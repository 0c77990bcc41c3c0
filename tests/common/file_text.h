// A file's whole contents as bytes ("" where it cannot be read), for tests that compare a file
// before and after a command; and a file written with exactly the given bytes.
#pragma once

#include <fstream>
#include <iterator>
#include <string>

namespace sy::test {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace sy::test
