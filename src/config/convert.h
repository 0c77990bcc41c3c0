// One YAML node to the type of a config member, strictly ("64abc" or "1.5" for an integer key is
// an error, not 64 or 1), failing with the key path and where the value came from: the config
// file's line, or the --set that put it there. config.cpp's key table calls these for each key.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "src/config/config.h"

namespace sy::config_convert {

// What a message says a node is: "'64abc'", "a list", "the string '16' (quoted or tagged)".
std::string describe(const YAML::Node& n);

// Where messages say a value came from.
struct Context {
  const std::string& source;                             // the config file's name
  const std::map<std::string, std::string>& overridden;  // key path -> the --set text

  // Throws UsageError "<source>: <path>: <what>" and " (from --set ...)" or " (line N)".
  [[noreturn]] void fail(const std::string& path, const std::string& what,
                         const YAML::Node* node = nullptr) const;
};

void convert(const YAML::Node& n, int64_t& out, const std::string& path, const Context& ctx);
void convert(const YAML::Node& n, uint64_t& out, const std::string& path, const Context& ctx);
void convert(const YAML::Node& n, double& out, const std::string& path, const Context& ctx);
// null: dropless (moe.capacity_factor).
void convert(const YAML::Node& n, std::optional<double>& out, const std::string& path,
             const Context& ctx);
// true/false, also in YAML 1.1's spellings (yes/no, on/off, capitalized).
void convert(const YAML::Node& n, bool& out, const std::string& path, const Context& ctx);
// null: empty.
void convert(const YAML::Node& n, std::string& out, const std::string& path, const Context& ctx);
// An integer or `nodes` (moe.route_groups).
void convert(const YAML::Node& n, RouteGroups& out, const std::string& path, const Context& ctx);

}  // namespace sy::config_convert
