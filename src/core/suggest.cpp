#include "src/core/suggest.h"

#include <algorithm>

namespace sy {

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min(
          {d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

std::string suggestion(std::string_view word, const std::vector<std::string>& candidates) {
  if (word.size() > 64) return "";  // no key is that long; the distance table would be huge
  const size_t limit = std::min<size_t>(2, word.size() / 2);
  size_t best = limit + 1;
  std::string best_name;
  for (const auto& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best) best = d, best_name = c;
  }
  return best_name.empty() ? "" : " (did you mean '" + best_name + "'?)";
}

}  // namespace sy
