// Numbers as text, one rule everywhere: in a message as a user would write it (number_text), and
// integers read in decimal only (parse_decimal).
#pragma once

#include <charconv>
#include <string>
#include <string_view>

namespace sy {

// A number in a message as a user would write it: the shortest text that reads back as the same
// double ("2.5", "0.001", "1e+20"), not std::to_string's six fixed decimals ("2.500000", and
// "0.000000" for 1e-9).
inline std::string number_text(double v) {
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

// A number written in decimal into `out`; false for anything else or out of T's range. For an
// integer T, "[+-]digits" only (not "1.5", "64abc", "+-1", YAML 1.1's or C's "0x10" and "0o10");
// leading zeros are decimal: "010" is 10 (YAML 1.2), where yaml-cpp's as<int>() and strtol's
// base 0 read 8. For a floating T, from_chars' general form ("3e-3", "0.1"; also "inf", "nan":
// the caller checks finiteness). The config, placement and cluster files all read numbers so.
template <class T>
bool parse_decimal(std::string_view text, T& out) {
  std::string_view s = text;
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  if (s.size() != text.size() && s.starts_with('-')) return false;  // "+-1"
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && ec == std::errc{} && ptr == s.data() + s.size();
}

}  // namespace sy
