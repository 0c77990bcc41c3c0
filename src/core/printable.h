// Text from outside (a model's sample, a file's contents) made safe for a terminal and a log:
// control bytes would move the cursor or make `grep` call the log binary.
#pragma once

#include <string>
#include <string_view>

namespace sy {

// `text` with every C0 control byte and DEL written as \xNN, except newline and tab; a
// backslash stays as it is. Other bytes, UTF-8 included, pass unchanged.
std::string printable(std::string_view text);

}  // namespace sy
