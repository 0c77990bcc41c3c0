// The safetensors writer against the format's definition, parsed here by hand: 8-byte
// little-endian header length, a JSON header (nlohmann parses it), data at 8-byte alignment with
// contiguous offsets.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "common/temp_dir.h"
#include "src/ckpt/safetensors.h"

namespace {

using namespace sy;

TEST(CkptSafetensors, HeaderOffsetsAndBytesFollowTheFormat) {
  test::TempDir dir;
  const std::string path = dir.file("x.safetensors");
  std::vector<ckpt::WholeTensor> t = {{"model/embed", {3, 2}, {1, 2, 3, 4, 5, 6}},
                                      {"model/final_norm", {2}, {-0.5f, 7.25f}}};
  ckpt::write_safetensors(path, t, {{"config", "run:\n  name: \"q\"\\\n"}, {"step", "7"}});

  std::ifstream in(path, std::ios::binary);
  const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<size_t>(i)]);
  EXPECT_EQ((8 + n) % 8, 0u) << "data must start 8-byte aligned";
  ASSERT_LE(8 + n, bytes.size());
  const auto h = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(h["__metadata__"]["config"], "run:\n  name: \"q\"\\\n");
  EXPECT_EQ(h["__metadata__"]["step"], "7");
  EXPECT_EQ(h["model/embed"]["dtype"], "F32");
  EXPECT_EQ(h["model/embed"]["shape"], nlohmann::json({3, 2}));
  EXPECT_EQ(h["model/embed"]["data_offsets"], nlohmann::json({0, 24}));
  EXPECT_EQ(h["model/final_norm"]["data_offsets"], nlohmann::json({24, 32}));
  ASSERT_EQ(bytes.size(), 8 + n + 32) << "no bytes beyond the last tensor";
  float got[8];
  std::memcpy(got, bytes.data() + 8 + n, sizeof got);
  const float want[8] = {1, 2, 3, 4, 5, 6, -0.5f, 7.25f};
  EXPECT_EQ(std::memcmp(got, want, sizeof got), 0);
}

TEST(CkptSafetensors, JsonStringsEscapeControlCharacters) {
  EXPECT_EQ(ckpt::json_string("a\"b\\c\n\t\x01"), "\"a\\\"b\\\\c\\n\\t\\u0001\"");
}

// A byte of no well-formed UTF-8 sequence (a Latin-1 checkpoint name in the metadata) became a
// header safetensors refuses ("invalid UTF-8 in header"), exported with exit 0; well-formed
// UTF-8 passes through. nlohmann::json, which validates UTF-8, accepts the result.
TEST(CkptSafetensors, JsonStringsAreWellFormedUtf8) {
  EXPECT_EQ(ckpt::json_string("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
  EXPECT_EQ(ckpt::json_string("caf\xe9.h5"), "\"caf\\ufffd.h5\"");
  EXPECT_EQ(ckpt::json_string("\xf0\x9f\x98"), "\"\\ufffd\\ufffd\\ufffd\"");  // cut short
  for (const std::string s :
       {"caf\xe9", "\xed\xa0\x80 surrogate", "\xc0\xaf overlong", "ok \xe2\x96\x81"})
    EXPECT_TRUE(nlohmann::json::accept(ckpt::json_string(s))) << ckpt::json_string(s);
}

}  // namespace
