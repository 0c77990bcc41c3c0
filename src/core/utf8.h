// Well-formed UTF-8 (Unicode's table 3-7: no overlong forms, no UTF-16 surrogates, nothing past
// U+10FFFF), for the places that judge text from outside: the SentencePiece encoder, which
// takes UTF-8 only (src/data/tokenizer), the log, which shows every other byte escaped
// (printable.h), and the config's YAML (src/config).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sy {

// The length of the well-formed UTF-8 sequence starting at text[i] (1 for ASCII), or 0 when
// there is none.
size_t utf8_length(std::string_view text, size_t i);

// The code point of the well-formed n-byte sequence at text[i] (the byte itself when n <= 1).
unsigned utf8_code_point(std::string_view text, size_t i, size_t n);

// The byte offset of the first byte of `text` that is not part of well-formed UTF-8, or -1.
int64_t first_invalid_utf8(std::string_view text);

// Where `text` holds what a YAML 1.2 stream may not (its c-printable set): a byte that is not
// well-formed UTF-8, or a control character other than tab, LF and CR (NUL included; C1 ones
// but NEL too). yaml-cpp reads them without a word: a NUL in `name: a<NUL>b` became "a\b ".
// Empty `what` when the text is fine; otherwise `what` says it ("a NUL byte", "byte 0xff, not
// UTF-8", "the control character U+0008") and where: `line`/`column` (1-based, in bytes; LF
// ends a line) and `offset` (0-based, in bytes).
struct TextProblem {
  std::string what;
  int64_t line = 0, column = 0, offset = 0;
};
TextProblem yaml_text_problem(std::string_view text);

// `text` with each character yaml_text_problem() would name (a byte that is not UTF-8: one
// each) replaced by U+FFFD; `replaced` (when not null) receives how many there were.
std::string replace_yaml_text_problems(std::string_view text, size_t* replaced = nullptr);

}  // namespace sy
