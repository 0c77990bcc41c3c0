#include "src/config/convert.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <sstream>
#include <string_view>

#include "src/config/yaml_scalar.h"
#include "src/core/error.h"
#include "src/core/number_text.h"
#include "src/core/printable.h"

namespace sy::config_convert {

namespace {

bool parse_number(const std::string& text, double& out) {
  return parse_decimal(text, out) && std::isfinite(out);
}

// Whether `text` is written as an integer ([+-]digits), whatever its size: a value that does not
// parse is then out of range, not of the wrong type.
bool integer_text(const std::string& text) {
  const size_t first = !text.empty() && (text[0] == '+' || text[0] == '-') ? 1 : 0;
  return text.size() > first && std::all_of(text.begin() + static_cast<long>(first), text.end(),
                                            [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

std::string describe(const YAML::Node& n) {
  if (n.IsNull()) return "nothing (null)";
  if (n.IsMap()) return "a mapping";
  if (n.IsSequence()) return "a list";
  const std::string& tag = n.Tag();
  const std::string_view core = "tag:yaml.org,2002:";
  const bool text = tag == "!" || tag == std::string(core) + "str";  // quoted, or !!str
  // Appended step by step: GCC 12's -Wrestrict misfires on `"'" + std::string + ...` here.
  std::string out = text ? "the string '" : "'";
  out += shortened(n.Scalar());
  out += '\'';
  if (text) return out + " (quoted or tagged)";
  // !!int, !!float, !!bool: the tag decides what it is; !!binary is base64-coded bytes.
  if (tag != "?")
    out += " (tagged " + (tag.starts_with(core) ? "!!" + tag.substr(core.size()) : tag) + ")";
  return out;
}

void Context::fail(const std::string& path, const std::string& what, const YAML::Node* node) const {
  std::ostringstream os;
  os << source << ": " << path << ": " << what;
  if (auto it = overridden.find(path); it != overridden.end())
    os << " (from --set " << shortened(it->second) << ")";
  else if (node && !node->Mark().is_null())
    os << " (line " << node->Mark().line + 1 << ")";
  throw UsageError(os.str());
}

void convert(const YAML::Node& n, int64_t& out, const std::string& path, const Context& ctx) {
  if (integer_scalar(n) && parse_decimal(n.Scalar(), out)) return;
  ctx.fail(path,
           integer_scalar(n) && integer_text(n.Scalar())
               ? "expected an integer from -9223372036854775808 to 9223372036854775807, got " +
                     describe(n)
               : "expected an integer, got " + describe(n),
           &n);
}

void convert(const YAML::Node& n, uint64_t& out, const std::string& path, const Context& ctx) {
  if (integer_scalar(n) && parse_decimal(n.Scalar(), out)) return;
  ctx.fail(path,
           integer_scalar(n) && integer_text(n.Scalar()) && n.Scalar()[0] != '-'
               ? "expected an integer from 0 to 18446744073709551615, got " + describe(n)
               : "expected a non-negative integer, got " + describe(n),
           &n);
}

void convert(const YAML::Node& n, double& out, const std::string& path, const Context& ctx) {
  if (!plain_scalar(n) || !parse_number(n.Scalar(), out))
    ctx.fail(path, "expected a finite number, got " + describe(n), &n);
}

void convert(const YAML::Node& n, std::optional<double>& out, const std::string& path,
             const Context& ctx) {
  if (n.IsNull()) {
    out.reset();
    return;
  }
  double v = 0;
  if (!plain_scalar(n) || !parse_number(n.Scalar(), v))
    ctx.fail(path, "expected null (dropless) or a positive number, got " + describe(n), &n);
  out = v;
}

void convert(const YAML::Node& n, bool& out, const std::string& path, const Context& ctx) {
  static constexpr std::string_view kTrue[] = {"true", "True", "TRUE", "yes", "Yes",
                                               "YES",  "on",   "On",   "ON"};
  static constexpr std::string_view kFalse[] = {"false", "False", "FALSE", "no", "No",
                                                "NO",    "off",   "Off",   "OFF"};
  if (plain_scalar(n)) {
    const std::string& s = n.Scalar();
    if (std::find(std::begin(kTrue), std::end(kTrue), s) != std::end(kTrue)) {
      out = true;
      return;
    }
    if (std::find(std::begin(kFalse), std::end(kFalse), s) != std::end(kFalse)) {
      out = false;
      return;
    }
  }
  ctx.fail(path, "expected true or false, got " + describe(n), &n);
}

void convert(const YAML::Node& n, std::string& out, const std::string& path, const Context& ctx) {
  if (n.IsNull()) {
    out.clear();
    return;
  }
  // !!binary is base64-coded bytes, not text: what it holds is no name or path.
  if (!n.IsScalar() || n.Tag() == "tag:yaml.org,2002:binary")
    ctx.fail(path, "expected a string, got " + describe(n), &n);
  out = n.Scalar();
}

void convert(const YAML::Node& n, RouteGroups& out, const std::string& path, const Context& ctx) {
  if (n.IsScalar() && n.Scalar() == "nodes") {
    out = RouteGroups{1, true};
    return;
  }
  int64_t count = 0;
  if (!plain_scalar(n) || !parse_decimal(n.Scalar(), count))
    ctx.fail(path, "expected an integer or 'nodes', got " + describe(n), &n);
  out = RouteGroups{count, false};
}

}  // namespace sy::config_convert
