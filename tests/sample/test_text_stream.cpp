// The streamed text of generated ids (TextStream, src/sample/sampler.h) against the decode of all
// ids at once, with stand-in decode functions written here: one that behaves like SentencePiece
// with byte fallback (each byte of an unfinished or invalid UTF-8 sequence becomes its own
// U+FFFD; a leading "▁" of the first piece is dropped) and the byte tokenizer (ids are bytes).
// Also: held ids are bounded (an invalid sequence does not stall the output) and the ids decoded
// over a long stream grow linearly with its length.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "src/sample/sampler.h"

namespace sy {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";
const std::string kSpace = "\xE2\x96\x81";  // "▁", SentencePiece's space

// The length of the valid UTF-8 character at bytes[i], or 0 when there is none.
size_t utf8_char_len(const std::string& bytes, size_t i) {
  const auto c = static_cast<unsigned char>(bytes[i]);
  const size_t n = c < 0x80             ? 1
                   : (c & 0xE0) == 0xC0 ? 2
                   : (c & 0xF0) == 0xE0 ? 3
                   : (c & 0xF8) == 0xF0 ? 4
                                        : 0;
  if (n == 0 || i + n > bytes.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(bytes[i + k]) & 0xC0) != 0x80) return 0;
  return n;
}

// A SentencePiece-like vocabulary: ids 0..255 are the byte pieces <0x00>..<0xFF>, the ids from
// 256 on the text pieces below. Counts the ids it is asked to decode.
struct FakeSentencePiece {
  std::vector<std::string> pieces = {"H", "i", "a", kSpace + "b", kSpace + "a", "b"};
  int64_t ids_decoded = 0;
  size_t most_ids = 0;  // in one call

  static constexpr int32_t kH = 256, kI = 257, kA = 258, kSpB = 259, kSpA = 260, kB = 261;

  std::string operator()(std::span<const int32_t> ids) {
    ids_decoded += static_cast<int64_t>(ids.size());
    most_ids = std::max(most_ids, ids.size());
    std::string out, bytes;
    const auto end_bytes = [&] {
      for (size_t i = 0; i < bytes.size();) {
        const size_t n = utf8_char_len(bytes, i);
        out += n > 0 ? bytes.substr(i, n) : kFffd;
        i += n > 0 ? n : 1;
      }
      bytes.clear();
    };
    for (size_t k = 0; k < ids.size(); ++k) {
      if (ids[k] < 256) {
        bytes.push_back(static_cast<char>(ids[k]));
        continue;
      }
      end_bytes();
      const std::string& p = pieces[static_cast<size_t>(ids[k] - 256)];
      if (p.rfind(kSpace, 0) != 0) {
        out += p;
        continue;
      }
      if (k > 0) out += ' ';
      out.append(p, kSpace.size());
    }
    end_bytes();
    return out;
  }
};

std::string byte_decode(std::span<const int32_t> ids) {
  std::string s;
  for (int32_t i : ids) s.push_back(static_cast<char>(i));
  return s;
}

// The context's text, then each push's, then the flush's.
std::string stream(const TextStream::DecodeFn& decode, const std::vector<int32_t>& ctx,
                   const std::vector<int32_t>& gen, std::string* before_flush = nullptr) {
  TextStream ts(decode, ctx);
  std::string s = ts.context_text();
  for (int32_t id : gen) s += ts.push(id);
  if (before_flush) *before_flush = s;
  return s + ts.flush();
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

using F = FakeSentencePiece;

TEST(TextStream, SentencePieceByteFallbackStreamsAsTheFullDecode) {
  FakeSentencePiece spm;
  const TextStream::DecodeFn decode = [&](std::span<const int32_t> ids) { return spm(ids); };
  const std::vector<int32_t> hi = {F::kH, F::kI};
  struct Case {
    const char* what;
    std::vector<int32_t> gen;
    std::string want;  // the text after "Hi"
  };
  const std::vector<Case> cases = {
      {"4-byte emoji over 4 tokens",
       {0xF0, 0x9F, 0x98, 0x80, F::kA, F::kA},
       "\xF0\x9F\x98\x80"
       "aa"},
      {"3-byte character",
       {0xE2, 0x82, 0xAC, F::kA, F::kA, F::kA},
       "\xE2\x82\xAC"
       "aaa"},
      {"mixed with ASCII pieces",
       {F::kA, 0xC3, 0xA9, F::kB, 0xF0, 0x9F, 0x98, 0x80, F::kA, 0xE2, 0x82, 0xAC, F::kB},
       "a\xC3\xA9"
       "b\xF0\x9F\x98\x80"
       "a\xE2\x82\xAC"
       "b"},
      {"leading-space piece after a held byte sequence",
       {0xE2, 0x82, 0xAC, F::kSpB, F::kSpA},
       "\xE2\x82\xAC b a"},
      {"leading-space piece first", {F::kSpA, F::kSpB}, " a b"},
  };
  for (const Case& c : cases) {
    const std::string full = spm(concat(hi, c.gen));
    ASSERT_EQ(full, "Hi" + c.want) << c.what;  // the stand-in itself
    std::string before_flush;
    EXPECT_EQ(stream(decode, hi, c.gen, &before_flush), full) << c.what;
    // Each ends on a complete character: nothing is left for the flush.
    EXPECT_EQ(before_flush, full) << c.what;
  }
  // A character is emitted by the token that completes it, not before and not later.
  TextStream ts(decode, hi);
  EXPECT_EQ(ts.push(0xF0), "");
  EXPECT_EQ(ts.push(0x9F), "");
  EXPECT_EQ(ts.push(0x98), "");
  EXPECT_EQ(ts.push(0x80), "\xF0\x9F\x98\x80");
  EXPECT_EQ(ts.push(F::kSpB), " b");
  // A context whose first piece has the leading space: it is dropped there, and only there.
  EXPECT_EQ(stream(decode, {F::kSpA}, {F::kSpB, F::kSpA}), "a b a");
}

TEST(TextStream, ContextEndingInsideACharacterIsCompletedByTheStream) {
  FakeSentencePiece spm;
  const TextStream::DecodeFn decode = [&](std::span<const int32_t> ids) { return spm(ids); };
  const std::vector<int32_t> ctx = {F::kH, F::kI, 0xF0, 0x9F};
  TextStream ts(decode, ctx);
  EXPECT_EQ(ts.context_text(), "Hi");
  EXPECT_EQ(stream(decode, ctx, {0x98, 0x80, F::kA}),
            "Hi\xF0\x9F\x98\x80"
            "a");
}

TEST(TextStream, InvalidBytesAreHeldAtMostThreeTokens) {
  // SentencePiece: each invalid byte is its own U+FFFD, emitted once 3 later ids are held.
  FakeSentencePiece spm;
  const TextStream::DecodeFn decode = [&](std::span<const int32_t> ids) { return spm(ids); };
  TextStream ts(decode, std::vector<int32_t>{F::kH});
  std::string s = ts.context_text();
  for (int i = 0; i < 8; ++i) {
    const std::string out = ts.push(0x80);
    EXPECT_EQ(out, i < 3 ? "" : kFffd) << i;
    s += out;
  }
  s += ts.flush();
  EXPECT_EQ(s, spm(std::vector<int32_t>{F::kH, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}));
  // A sequence that turns out valid after an invalid start still decodes as a character.
  const std::vector<int32_t> gen = {0xF0, 0xF0, 0xF0, 0xF0, 0x9F, 0x98, 0x80, F::kA};
  EXPECT_EQ(stream(decode, {F::kH}, gen), spm(concat({F::kH}, gen)));
}

TEST(TextStream, ByteTokenizerHoldsUnfinishedCharactersOnly) {
  std::string before_flush;
  const std::vector<int32_t> gen = {'a', 0xF0, 0x9F, 0x98, 0x80, 0xC3, 0xA9, 'b', 0xE2, 0x82, 0xAC};
  EXPECT_EQ(stream(byte_decode, {'H', 'i'}, gen, &before_flush),
            byte_decode(concat({'H', 'i'}, gen)));
  EXPECT_EQ(before_flush, byte_decode(concat({'H', 'i'}, gen)));
  // Lead bytes that never complete: each is emitted once 3 later bytes are held, and the bytes
  // out are the bytes in.
  TextStream ts(byte_decode, std::vector<int32_t>{'x'});
  std::string s = ts.context_text();
  for (int i = 0; i < 6; ++i) {
    const std::string out = ts.push(0xF0);
    EXPECT_EQ(out, i < 3 ? "" : "\xF0") << i;
    s += out;
  }
  s += ts.push('y');
  EXPECT_EQ(s, "x\xF0\xF0\xF0\xF0\xF0\xF0y");
}

TEST(TextStream, RandomPiecesStreamAsTheFullDecode) {
  FakeSentencePiece spm;
  const TextStream::DecodeFn decode = [&](std::span<const int32_t> ids) { return spm(ids); };
  std::mt19937 rng(7);
  // Bytes of valid characters, stray bytes, and text pieces.
  // EF BF BD: a real U+FFFD, which ends like an unfinished character (review: cut after its EF,
  // its BF BD were streamed as two more U+FFFD).
  const std::vector<int32_t> pool = {0xEF, 0xBF, 0xBD,  0xEF,  0xBF,    0xBD,    0xF0,
                                     0x9F, 0x98, 0x80,  0xE2,  0x82,    0xAC,    0xC3,
                                     0xA9, 0x41, F::kH, F::kA, F::kSpA, F::kSpB, F::kB};
  // The review's cases: a prompt ending in U+FFFD and a stray EF, and a U+FFFD generated.
  for (const auto& [ctx, gen] : std::vector<std::pair<std::vector<int32_t>, std::vector<int32_t>>>{
           {{F::kH, 0xEF, 0xBF, 0xBD, 0xEF}, {F::kA}}, {{F::kH}, {0xEF, 0xBF, 0xBD, 0xEF, 0x98}}}) {
    EXPECT_EQ(stream(decode, ctx, gen), spm(concat(ctx, gen)));
    EXPECT_EQ(stream(byte_decode, ctx, gen), byte_decode(concat(ctx, gen)));
  }
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<int32_t> ctx, gen;
    for (int i = 0; i < 1 + trial % 5; ++i) ctx.push_back(pool[rng() % pool.size()]);
    for (int i = 0; i < 30; ++i) gen.push_back(pool[rng() % pool.size()]);
    EXPECT_EQ(stream(decode, ctx, gen), spm(concat(ctx, gen))) << "trial " << trial;
    EXPECT_EQ(stream(byte_decode, ctx, gen), byte_decode(concat(ctx, gen))) << "trial " << trial;
  }
}

TEST(TextStream, DecodedIdsGrowLinearlyWithTheStream) {
  FakeSentencePiece spm;
  const TextStream::DecodeFn decode = [&](std::span<const int32_t> ids) { return spm(ids); };
  const std::vector<int32_t> ctx(64, F::kA);
  const std::vector<int32_t> cycle = {F::kSpA, 0xF0, 0x9F, 0x98, 0x80, F::kB, 0xE2, 0x82, 0xAC};
  std::vector<int32_t> gen;
  for (int i = 0; i < 5000; ++i) gen.push_back(cycle[static_cast<size_t>(i) % cycle.size()]);
  TextStream ts(decode, ctx);
  std::string s = ts.context_text();
  spm.ids_decoded = 0;
  for (int32_t id : gen) s += ts.push(id);
  s += ts.flush();
  // Two decodes of a window of at most ~8 ids per push; the whole text each time would be
  // ~5000 * 2500 ids.
  EXPECT_LE(spm.ids_decoded, int64_t{20} * 5000);
  EXPECT_TRUE(s == spm(concat(ctx, gen)));  // (not EXPECT_EQ: ~14 KB of text on failure)
}

// A long context (a prompt file) is decoded a window at a time, its text the decode of all its
// ids: decoded at once, SentencePiece's memory was 40x the prompt's text (QA: 367 MB for a
// 2.5 MB prompt). Characters split over byte tokens and stray bytes cross the windows' ends.
TEST(TextStream, ALongContextIsDecodedAWindowAtATime) {
  FakeSentencePiece spm;
  const TextStream::DecodeFn decode = [&](std::span<const int32_t> ids) { return spm(ids); };
  std::mt19937 rng(11);
  const std::vector<int32_t> pool = {0xF0, 0x9F, 0x98,  0x80,  0xE2,    0x82,    0xAC, 0xC3,
                                     0xA9, 0x41, F::kH, F::kA, F::kSpA, F::kSpB, F::kB};
  // The context's also has EF BF BD, a real U+FFFD, which a window's end must not take for a
  // byte still to be completed (review: U+FFFD U+27C2 across a window's end came out as two
  // U+FFFD).
  std::vector<int32_t> ctx_pool = pool;
  for (int k = 0; k < 3; ++k) ctx_pool.insert(ctx_pool.end(), {0xEF, 0xBF, 0xBD});
  const std::vector<int32_t> fffd_then = {0xEF, 0xBF, 0xBD, 0xE2, 0x9F, 0x82, F::kSpA};
  for (int trial = 0; trial < 40; ++trial) {
    std::vector<int32_t> ctx, gen;
    for (int i = 0; i < 20000 + trial; ++i) ctx.push_back(ctx_pool[rng() % ctx_pool.size()]);
    // Whole characters too, so that every chunk end meets one somewhere.
    for (int i = 0; i < 2000; ++i)
      for (int32_t b : {0xF0, 0x9F, 0x98, 0x80}) ctx.insert(ctx.begin() + i * 9, b);
    ctx.insert(ctx.begin() + 4096 - 7 + trial % 8, fffd_then.begin(), fffd_then.end());
    for (int i = 0; i < 10; ++i) gen.push_back(pool[rng() % pool.size()]);
    spm.most_ids = 0;
    const std::string got = stream(decode, ctx, gen);
    EXPECT_LE(spm.most_ids, 4096u + 8) << "trial " << trial;
    spm.most_ids = 0;
    EXPECT_TRUE(got == spm(concat(ctx, gen))) << "trial " << trial;
    EXPECT_TRUE(stream(byte_decode, ctx, gen) == byte_decode(concat(ctx, gen)))
        << "trial " << trial;
  }
}

// The ids a stream keeps stay bounded however long it runs (it kept every one: 4 bytes a token
// for the whole of `sample --tokens 100000000`), and its text is still the decode of all ids.
TEST(TextStream, KeptIdsStayBoundedOverALongStream) {
  FakeSentencePiece spm;
  const TextStream::DecodeFn decode = [&](std::span<const int32_t> ids) { return spm(ids); };
  const std::vector<int32_t> ctx(64, F::kA);
  // Characters split over byte tokens, a stray byte (held at most 3 tokens), text pieces.
  const std::vector<int32_t> cycle = {F::kSpA, 0xF0, 0x9F, 0x98, 0x80,   F::kB,
                                      0xE2,    0x82, 0xAC, 0x9F, F::kSpB};
  std::vector<int32_t> gen;
  for (int i = 0; i < 30000; ++i) gen.push_back(cycle[static_cast<size_t>(i) % cycle.size()]);
  for (const auto& [name, fn] :
       {std::pair<const char*, TextStream::DecodeFn>{"spm", decode}, {"bytes", byte_decode}}) {
    TextStream ts(fn, ctx);
    std::string s = ts.context_text();
    size_t most = 0;
    for (int32_t id : gen) {
      s += ts.push(id);
      most = std::max(most, ts.kept_ids());
    }
    s += ts.flush();
    EXPECT_LE(most, TextStream::kDropAt + 16) << name;
    EXPECT_TRUE(s == fn(concat(ctx, gen))) << name;  // (not EXPECT_EQ: ~60 KB of text)
  }
}

}  // namespace
}  // namespace sy
