#include "src/core/printable.h"

#include <cstdio>

#include "src/core/utf8.h"

namespace sy {

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const size_t n = utf8_length(text, i);
    const bool control = c < 0x80 && ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f);
    if (n == 0 || control) {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      out += buf;
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string shortened(std::string_view text) {
  constexpr size_t kMax = 80;
  if (text.size() <= kMax) return printable(text);
  return printable(text.substr(0, 60)) + "... (" + std::to_string(text.size()) + " characters)";
}

}  // namespace sy
