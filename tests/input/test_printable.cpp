// printable(): what a log shows of text from outside (eval samples, a lock file's contents).
#include <gtest/gtest.h>

#include <string>

#include "src/core/printable.h"

namespace sy {
namespace {

TEST(Printable, ControlBytesAreEscapedNewlinesTabsAndUtf8Kept) {
  EXPECT_EQ(printable(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(printable("back\bspace\x1b[2J\x7f"), "back\\x08space\\x1B[2J\\x7F");
  EXPECT_EQ(printable("line 1\n\tline 2\r\n"), "line 1\n\tline 2\\x0D\n");
  EXPECT_EQ(printable("caf\xc3\xa9 \xf0\x9f\x98\x80 \\x41"), "caf\xc3\xa9 \xf0\x9f\x98\x80 \\x41");
  EXPECT_EQ(printable(""), "");
}

}  // namespace
}  // namespace sy
