#include "src/config/yaml_load.h"

#include <yaml-cpp/depthguard.h>

#include <sstream>
#include <string>

#include "src/core/error.h"
#include "src/core/utf8.h"

namespace sy {

std::vector<YAML::Node> load_yaml_documents(std::string_view text, const std::string& source) {
  if (const TextProblem p = yaml_text_problem(text); !p.what.empty())
    throw UsageError(source + ": " + p.what + " at line " + std::to_string(p.line) + ", column " +
                     std::to_string(p.column) +
                     "; YAML text is UTF-8 without control characters other than tab");
  size_t end = text.size();
  while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r' || text[end - 1] == ' ' ||
                     text[end - 1] == '\t'))
    --end;
  try {
    return YAML::LoadAll(std::string(text.substr(0, end)));
  } catch (const YAML::DeepRecursion& e) {
    // yaml-cpp's own guard against a stack overflow; its message alone says "bad file".
    throw UsageError(source + ": YAML nested too deep (more than " + std::to_string(e.depth() - 1) +
                     " levels of lists or mappings, at line " + std::to_string(e.mark.line + 1) +
                     ")");
  } catch (const YAML::ParserException& e) {
    std::ostringstream os;
    os << source << ": YAML syntax error at line " << e.mark.line + 1 << ", column "
       << e.mark.column + 1 << ": " << e.msg;
    if (e.msg.find("EOF in scalar") != std::string::npos)
      os << " (a quote opened and not closed: the value runs to the end of the text)";
    throw UsageError(os.str());
  }
}

}  // namespace sy
