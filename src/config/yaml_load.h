// Where every YAML text a user gives switchyard is parsed (the config and its --set values, the
// cluster files of `plan`, the expert placement files): one text in, its documents out, or a
// UsageError naming `source` and the line. Beyond YAML::LoadAll:
//   - text that is not UTF-8, or holds a control character other than tab, is refused with where
//     it is (yaml-cpp reads it without a word: a NUL in a run name became "\b ");
//   - a quoted scalar left open is an error. yaml-cpp 0.7 reads one that runs into a text ending
//     in a newline (nearly every file) as one string to the end, the rest of the file swallowed:
//     QA's config with `name: "tiny` trained the defaults under a 90-character run name, exit 0.
//     So a text that parses is parsed again without its trailing blanks and newlines, where
//     yaml-cpp meets the end inside such a scalar and says so (the message adds what it likely
//     is); the values are always those of the whole text (a block scalar at the end keeps its
//     trailing spaces and newline).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <string_view>
#include <vector>

namespace sy {

// Throws UsageError "<source>: YAML syntax error at line L, column C: <what>" (lines from 1),
// "<source>: YAML nested too deep ...", or "<source>: <text problem> at line L, column C; ...".
std::vector<YAML::Node> load_yaml_documents(std::string_view text, const std::string& source);

}  // namespace sy
