// Option checks whose messages read well: CLI11's PositiveNumber and NonNegativeNumber print
// their range up to DBL_MAX in full ("Value 0 not in range 0.000000 to 17976931348623157...").
#pragma once

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdlib>
#include <string>

namespace sy::app {

namespace detail {
// A finite number, or nothing when `text` is not one.
inline bool finite_number(const std::string& text, double& v) {
  char* end = nullptr;
  v = std::strtod(text.c_str(), &end);
  return !text.empty() && end == text.c_str() + text.size() && std::isfinite(v);
}
}  // namespace detail

// A finite number > 0.
inline CLI::Validator positive_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        double v = 0;
        if (detail::finite_number(text, v) && v > 0) return "";
        return "expected a number > 0, got '" + text + "'";
      },
      "POSITIVE");
}

// A finite number >= 0.
inline CLI::Validator non_negative_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        double v = 0;
        if (detail::finite_number(text, v) && v >= 0) return "";
        return "expected a number >= 0, got '" + text + "'";
      },
      "NONNEGATIVE");
}

}  // namespace sy::app
