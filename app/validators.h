// Option checks whose messages read well: CLI11's PositiveNumber and NonNegativeNumber print
// their range up to DBL_MAX in full ("Value 0 not in range 0.000000 to 17976931348623157...").
#pragma once

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace sy::app {

namespace detail {
// A finite number, or nothing when `text` is not one.
inline bool finite_number(const std::string& text, double& v) {
  char* end = nullptr;
  v = std::strtod(text.c_str(), &end);
  return !text.empty() && end == text.c_str() + text.size() && std::isfinite(v);
}

// A finite number > 0, or >= 0 when `zero_ok`; `name` is its tag in --help.
inline CLI::Validator number_over_zero(bool zero_ok, const std::string& name) {
  const std::string expected = zero_ok ? "expected a number >= 0" : "expected a number > 0";
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        double v = 0;
        if (detail::finite_number(text, v) && (v > 0 || (zero_ok && v == 0))) return "";
        return expected + ", got '" + text + "'";
      },
      name);
}
}  // namespace detail

// Any value but an empty one (an unset variable: `--resume "$X"`), which the command would take as
// the option not given; `expected` says what to give ("give 'auto' or a checkpoint file").
inline CLI::Validator non_empty(const std::string& expected) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        return text.empty() ? expected + ", not an empty value" : std::string();
      },
      "");
}

// A finite number > 0.
inline CLI::Validator positive_number() {
  return detail::number_over_zero(/*zero_ok=*/false, "POSITIVE");
}

// A finite number >= 0.
inline CLI::Validator non_negative_number() {
  return detail::number_over_zero(/*zero_ok=*/true, "NONNEGATIVE");
}

// A finite number in [lo, hi]; `range` is how the message writes it, e.g. "[0, 0.9]" (CLI11's
// Range says "Value 1 not in range 0.000000 to 0.900000" and lets nan through).
inline CLI::Validator number_in(double lo, double hi, const std::string& range) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        double v = 0;
        if (detail::finite_number(text, v) && v >= lo && v <= hi) return "";
        return "expected a number in " + range + ", got '" + text + "'";
      },
      "NUMBER in " + range);
}

// An integer in [0, 2^64) for a uint64_t option: CLI11 reads "-1" and 2^64 into one as 2^64 - 1.
inline CLI::Validator unsigned_64() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const size_t first = text.find_first_not_of(" \t");
        errno = 0;
        std::strtoull(text.c_str(), nullptr, 0);
        if ((first != std::string::npos && text[first] == '-') || errno == ERANGE)
          return "expected an integer in [0, 2^64), got '" + text + "'";
        return "";
      },
      "UINT64");
}

// An integer that fits an int64_t option: CLI11 reads 99999999999999999999 into one as
// 2^63 - 1 (and its negative as -2^63) without a word.
inline CLI::Validator signed_64() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        errno = 0;
        std::strtoll(text.c_str(), nullptr, 0);
        if (errno == ERANGE) return "expected an integer in [-2^63, 2^63), got '" + text + "'";
        return "";
      },
      "INT64");
}

// An integer option's text written in decimal without leading zeros: CLI11 converts with base 0
// ("010" is 8, "0x10" 16) and an empty value to 0, where the config reads decimal only.
inline CLI::Validator decimal_integer() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        std::string_view s = text;
        if (!s.empty() && (s[0] == '+' || s[0] == '-')) s.remove_prefix(1);
        const bool digits = !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
        if (digits && (s.size() == 1 || s[0] != '0')) return "";
        return "expected an integer written in decimal, got '" + text + "'";
      },
      "");
}

// An integer in [lo, hi] written in decimal: CLI11's Range read '1e3' or '0x3E8' and answered
// "Value 1e3 not in range 200 to 8000" of a value that is in range.
inline CLI::Validator integer_in(int64_t lo, int64_t hi) {
  const std::string range = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        std::string decimal = text;
        if (!decimal_integer()(decimal).empty() || text.size() > 19)
          return "expected an integer in " + range + ", got '" + text + "'";
        const long long v = std::strtoll(text.c_str(), nullptr, 10);
        if (v < lo || v > hi) return "expected an integer in " + range + ", got '" + text + "'";
        return "";
      },
      "INT in " + range);
}

// A number option's text that is a number: CLI11 reads an empty value as 0 (--temperature ''
// sampled greedily).
inline CLI::Validator written_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        char* end = nullptr;
        std::strtod(text.c_str(), &end);
        if (!text.empty() && end == text.c_str() + text.size()) return "";
        return "expected a number, got '" + text + "'";
      },
      "");
}

// Every integer and number option of `app` and its subcommands, by the type CLI11 gives it
// (INT, UINT, FLOAT): written as one (see decimal_integer, written_number).
inline void require_written_numbers(CLI::App& app) {
  for (CLI::Option* o : app.get_options()) {
    const std::string type = o->get_type_name();
    if (type.starts_with("INT") || type.starts_with("UINT"))
      o->check(decimal_integer());
    else if (type.starts_with("FLOAT"))
      o->check(written_number());
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
    require_written_numbers(*sub);
}

}  // namespace sy::app
