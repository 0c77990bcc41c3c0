#include "src/core/utf8.h"

#include <algorithm>
#include <cstdio>
#include <utility>

namespace sy {

unsigned utf8_code_point(std::string_view text, size_t i, size_t n) {
  const auto c = static_cast<unsigned char>(text[i]);
  if (n <= 1) return c;
  unsigned cp = c & (0x7Fu >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
  return cp;
}

size_t utf8_length(std::string_view text, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned c = b(i);
  size_t n = 0;
  unsigned min = 0;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  const unsigned cp = utf8_code_point(text, i, n);
  // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not valid UTF-8.
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

int64_t first_invalid_utf8(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8_length(text, i);
    if (n == 0) return static_cast<int64_t>(i);
    i += n;
  }
  return -1;
}

namespace {
// What the character of n bytes at text[i] is that YAML does not allow (n == 0: a byte that is
// not UTF-8), or "" when it is allowed.
std::string yaml_char_problem(std::string_view text, size_t i, size_t n) {
  char what[64] = "";
  if (n == 0) {
    std::snprintf(what, sizeof what, "byte 0x%02x, not UTF-8",
                  static_cast<unsigned>(static_cast<unsigned char>(text[i])));
  } else {
    const unsigned cp = utf8_code_point(text, i, n);
    if (cp == 0)
      std::snprintf(what, sizeof what, "a NUL byte");
    else if ((cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') ||
             (cp >= 0x7F && cp <= 0x9F && cp != 0x85) || cp == 0xFFFE || cp == 0xFFFF)
      std::snprintf(what, sizeof what, "the control character U+%04X", cp);
  }
  return what;
}
}  // namespace

TextProblem yaml_text_problem(std::string_view text) {
  int64_t line = 1, column = 1;
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8_length(text, i);
    if (std::string what = yaml_char_problem(text, i, n); !what.empty())
      return {std::move(what), line, column, static_cast<int64_t>(i)};
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      column += static_cast<int64_t>(n);
    }
    i += n;
  }
  return {};
}

std::string replace_yaml_text_problems(std::string_view text, size_t* replaced) {
  std::string out;
  out.reserve(text.size());
  size_t count = 0;
  for (size_t i = 0; i < text.size();) {
    const size_t n = utf8_length(text, i);
    if (yaml_char_problem(text, i, n).empty()) {
      out.append(text.substr(i, n));
    } else {
      out.append("\xEF\xBF\xBD");  // U+FFFD REPLACEMENT CHARACTER
      ++count;
    }
    i += std::max<size_t>(n, 1);
  }
  if (replaced != nullptr) *replaced = count;
  return out;
}

}  // namespace sy
