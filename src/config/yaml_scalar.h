// How switchyard's YAML files (the config, placement and cluster files) read a scalar as a number
// or a boolean: only one written without quotes (or tagged !!int, !!float, !!bool) is one --
// "16" in quotes, or !!str 16, is the string 16, as every YAML reader takes it.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

namespace sy {

inline bool plain_scalar(const YAML::Node& n) {
  if (!n.IsScalar()) return false;
  const std::string& tag = n.Tag();
  return tag == "?" || tag == "tag:yaml.org,2002:int" || tag == "tag:yaml.org,2002:float" ||
         tag == "tag:yaml.org,2002:bool";
}

// A scalar an integer key reads: plain, and not tagged !!float (`!!float 32` is 32.0 to every
// YAML reader, which an integer key refuses as it refuses `32.0`).
inline bool integer_scalar(const YAML::Node& n) {
  return plain_scalar(n) && n.Tag() != "tag:yaml.org,2002:float";
}

}  // namespace sy
