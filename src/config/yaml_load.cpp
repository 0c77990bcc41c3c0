#include "src/config/yaml_load.h"

#include <yaml-cpp/depthguard.h>

#include <sstream>
#include <string>

#include "src/core/error.h"
#include "src/core/utf8.h"

namespace sy {

namespace {

constexpr const char* kOpenQuote =
    "a quote opened and not closed: the value runs to the end of the text";

// yaml-cpp's parse of `text`, its errors as UsageErrors naming `source`. A syntax error is said
// to be a quote left open where yaml-cpp met the end inside a scalar, or where the text is the
// trimmed copy (`trimmed`) of one that parsed.
std::vector<YAML::Node> parse(const std::string& text, const std::string& source, bool trimmed) {
  try {
    return YAML::LoadAll(text);
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp's own guard against a stack overflow; its message alone says "bad file".
    throw UsageError(source + ": YAML nested too deep (more than " + std::to_string(e.depth() - 1) +
                     " levels of lists or mappings, at line " + std::to_string(e.mark.line + 1) +
                     ")");
  } catch (const YAML::ParserException& e) {
    std::ostringstream os;
    os << source << ": YAML syntax error at line " << e.mark.line + 1 << ", column "
       << e.mark.column + 1 << ": " << e.msg;
    if (trimmed || e.msg.find("EOF in scalar") != std::string::npos)
      os << " (" << kOpenQuote << ")";
    throw UsageError(os.str());
  }
}

}  // namespace

std::vector<YAML::Node> load_yaml_documents(std::string_view text, const std::string& source) {
  if (const TextProblem p = yaml_text_problem(text); !p.what.empty())
    throw UsageError(source + ": " + p.what + " at line " + std::to_string(p.line) + ", column " +
                     std::to_string(p.column) +
                     "; YAML text is UTF-8 without control characters other than tab");
  const std::string whole(text);
  // Without a final newline yaml-cpp says "illegal EOF in scalar" of a quote left open.
  std::vector<YAML::Node> docs = parse(whole, source, false);
  // With one, it reads the rest of the text into that value. The same text without its trailing
  // blanks and newlines must parse too: a text that parses either way means the same (the value
  // read is the whole text's), one that does not has a quote left open.
  size_t end = text.size();
  while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r' || text[end - 1] == ' ' ||
                     text[end - 1] == '\t'))
    --end;
  if (end < text.size()) parse(whole.substr(0, end), source, true);
  return docs;
}

}  // namespace sy
