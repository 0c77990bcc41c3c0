// Text from outside (a model's sample, a file's contents) made safe for a terminal and a log:
// control bytes would move the cursor, and they and invalid UTF-8 make `grep` call the log binary.
#pragma once

#include <string>
#include <string_view>

namespace sy {

// `text` with every C0 control byte and DEL written as \xNN, except newline and tab, and so is
// every byte that is not part of well-formed UTF-8; a backslash stays as it is. Valid UTF-8
// passes unchanged.
std::string printable(std::string_view text);

// Text from outside as messages echo it: a megabyte-long key, value or path is cut to its start
// and its length ("aaaa... (1000000 characters)"), so the message stays one readable line, and
// what is kept is printable() (an escape sequence in a --set does not reach the terminal).
std::string shortened(std::string_view text);

}  // namespace sy
