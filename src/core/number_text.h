// A number in a message as a user would write it: the shortest text that reads back as the same
// double ("2.5", "0.001", "1e+20"), not std::to_string's six fixed decimals ("2.500000", and
// "0.000000" for 1e-9).
#pragma once

#include <charconv>
#include <string>

namespace sy {

inline std::string number_text(double v) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

}  // namespace sy
