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

// Bytes that are not well-formed UTF-8 (an untrained byte model's output) are escaped one by one;
// well-formed sequences of every length pass.
TEST(Printable, InvalidUtf8IsEscapedByteByByte) {
  EXPECT_EQ(printable("a\xff\xfe b"), "a\\xFF\\xFE b");
  EXPECT_EQ(printable("\xc3"), "\\xC3");                             // a lead byte at the end
  EXPECT_EQ(printable("\xc3("), "\\xC3(");                           // no continuation byte
  EXPECT_EQ(printable("\xc0\xaf"), "\\xC0\\xAF");                    // overlong '/'
  EXPECT_EQ(printable("\xed\xa0\x80"), "\\xED\\xA0\\x80");           // a surrogate (U+D800)
  EXPECT_EQ(printable("\xf4\x90\x80\x80"), "\\xF4\\x90\\x80\\x80");  // past U+10FFFF
  EXPECT_EQ(printable("\x80x"), "\\x80x");                           // a lone continuation byte
  EXPECT_EQ(printable("\xc2\xa0\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"),
            "\xc2\xa0\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf");  // 2, 3, 4 bytes, U+10FFFF
}

}  // namespace
}  // namespace sy
