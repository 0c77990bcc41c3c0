// "Did you mean ...?" for a mistyped name: the config's keys, the command line's subcommands.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace sy {

// Optimal-string-alignment distance: Levenshtein plus adjacent transpositions ("modle" -> 1).
size_t edit_distance(std::string_view a, std::string_view b);

// " (did you mean 'x'?)" for the closest candidate within edit distance 2, else "". Short words
// get less slack: two edits turn "foo" into "moe", which is no hint at all.
std::string suggestion(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace sy
