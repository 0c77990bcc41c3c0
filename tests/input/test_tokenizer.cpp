// Subword tokenizers in token files (SPEC section 8), each checked against an independent result:
// the original text (decode of the stored ids) and SentencePiece's own command-line encoder
// spm_encode run on the stored model. `data import` is tests/input/test_import.cpp.
#include <gtest/gtest.h>

#include <hdf5.h>
#include <sentencepiece_trainer.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "common/expect_error.h"
#include "common/file_size_limit.h"
#include "common/file_text.h"
#include "common/run_command.h"
#include "common/temp_dir.h"
#include "src/core/error.h"
#include "src/core/h5.h"
#include "src/data/import.h"
#include "src/data/tokenizer.h"
#include "src/data/tokenizer_h5.h"
#include "src/data/tokens.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

using test::expect_usage_error;
using test::FileSizeLimit;
using test::write_file;

// English-like text with indentation, blank lines, a non-ASCII character and a tab.
std::string corpus(int lines, int salt) {
  std::ostringstream os;
  const char* words[] = {"the",   "licence", "software", "copy",       "distribute", "modify",
                         "terms", "program", "source",   "conditions", "warranty",   "free"};
  for (int i = 0; i < lines; ++i) {
    if (i % 7 == 0) os << "  ";
    for (int w = 0; w < 9; ++w) os << words[(i * 5 + w * 3 + salt) % 12] << (w == 8 ? "" : " ");
    os << (i % 11 == 0 ? " caf\xc3\xa9\t." : ".") << "\n";
    if (i % 13 == 0) os << "\n";
  }
  return os.str();
}

std::string text_of(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  return tok.decode(ids);
}

struct SpmFile {
  test::TempDir dir;
  std::string a, b, path;
  PrepareReport rep;
  explicit SpmFile(const std::string& type, int64_t vocab = 320) {
    a = corpus(300, 0);
    b = corpus(200, 5);
    write_file(dir.file("a.txt"), a);
    write_file(dir.file("b.txt"), b);
    PrepareOptions opt;
    opt.inputs = {dir.file("a.txt"), dir.file("b.txt")};
    opt.output = path = dir.file("tok.h5");
    opt.tokenizer = type;
    opt.vocab_size = vocab;
    rep = prepare_token_file(opt);
  }
};

// The same inputs make the same file, byte for byte, so that a token file's checksum names its
// contents (QA: two runs of `data prepare` a second apart differed in 4 bytes, HDF5's object
// modification times).
TEST(Tokenizer, TheSameInputsMakeTheSameBytes) {
  for (const char* type : {"bytes", "bpe"}) {
    const int64_t vocab = std::string(type) == "bytes" ? 256 : 320;
    SpmFile first(type, vocab);
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // times are in seconds
    SpmFile second(type, vocab);
    const std::string a = test::read_file(first.path), b = test::read_file(second.path);
    EXPECT_GT(a.size(), 1000u);
    EXPECT_TRUE(a == b) << type << ": the two files differ";
  }
}

TEST(Tokenizer, BpeFileCarriesItsModelAndDecodesToTheText) {
  SpmFile f("bpe");
  EXPECT_EQ(f.rep.tokenizer, "sentencepiece");
  EXPECT_EQ(f.rep.vocab_size, 320);
  EXPECT_EQ(f.rep.train_bytes + f.rep.val_bytes, static_cast<int64_t>(f.a.size() + f.b.size()));
  EXPECT_LT(f.rep.train_tokens, f.rep.train_bytes / 2);  // it compresses

  const TokenData d = read_token_file(f.path, 320, 8);
  EXPECT_EQ(d.tokenizer, "sentencepiece");
  EXPECT_EQ(d.vocab_size, 320);
  ASSERT_FALSE(d.tokenizer_model.empty());
  const Tokenizer tok = Tokenizer::from_stored(d.tokenizer, d.tokenizer_model, d.vocab_size, "t");
  EXPECT_EQ(tok.vocab_size(), 320);
  // Lossless: the stored ids of each split decode to the texts it was made of (the last 10 % of
  // each input is /val, the cut moved forward out of a UTF-8 character).
  auto cut = [](const std::string& t) {
    size_t c = t.size() - static_cast<size_t>(static_cast<double>(t.size()) * 0.1);
    while (c < t.size() && (static_cast<unsigned char>(t[c]) & 0xC0) == 0x80) ++c;
    return c;
  };
  const size_t ca = cut(f.a), cb = cut(f.b);
  EXPECT_EQ(text_of(tok, d.train), f.a.substr(0, ca) + f.b.substr(0, cb));
  EXPECT_EQ(text_of(tok, d.val), f.a.substr(ca) + f.b.substr(cb));

  // The dataset as any HDF5 reader sees it: /tokenizer/model, one-dimensional uint8.
  h5::File file{H5Fopen(f.path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)};
  h5::Dataset ds{H5Dopen2(file, "/tokenizer/model", H5P_DEFAULT)};
  ASSERT_GE(ds.get(), 0);
  h5::Datatype type{H5Dget_type(ds)};
  EXPECT_GT(H5Tequal(type, H5T_STD_U8LE), 0);
  EXPECT_EQ(read_tokenizer_model(file), d.tokenizer_model);
}

// The ids no text encodes to: SentencePiece's defaults <unk> 0, <s> 1, </s> 2 in switchyard's own
// models; the stored ids of a whole file hold none of them. The byte tokenizer has none.
TEST(Tokenizer, ControlPiecesAreTheIdsNoTextEncodesTo) {
  SpmFile f("bpe");
  const TokenData d = read_token_file(f.path, 320, 8);
  const Tokenizer tok = Tokenizer::from_stored(d.tokenizer, d.tokenizer_model, d.vocab_size, "t");
  EXPECT_EQ(tok.never_encoded_ids(), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(tok.decode(std::vector<int32_t>{1, 2}), "");  // <s>, </s>: no text
  for (const auto* split : {&d.train, &d.val})
    for (int32_t id : *split) ASSERT_GT(id, 2);
  EXPECT_TRUE(Tokenizer::bytes().never_encoded_ids().empty());
}

TEST(Tokenizer, UnigramToo) {
  SpmFile f("unigram", 300);
  const TokenData d = read_token_file(f.path, 300, 8);
  const Tokenizer tok = Tokenizer::from_stored(d.tokenizer, d.tokenizer_model, d.vocab_size, "t");
  EXPECT_EQ(tok.vocab_size(), 300);
  EXPECT_EQ(tok.decode(tok.encode(f.a)), f.a);
}

// SentencePiece's own encoder (Debian's `sentencepiece` package) on the model stored in the file
// gives the ids switchyard's Tokenizer gives, line by line (spm_encode encodes each line alone).
TEST(Tokenizer, StoredModelEncodesAsSpmEncode) {
  if (!fs::exists("/usr/bin/spm_encode")) GTEST_SKIP() << "spm_encode not installed";
  SpmFile f("bpe");
  const TokenData d = read_token_file(f.path, 320, 8);
  write_file(f.dir.file("m.model"), d.tokenizer_model);
  const Tokenizer tok = Tokenizer::from_stored(d.tokenizer, d.tokenizer_model, d.vocab_size, "t");
  const std::vector<std::string> lines = {"the licence terms of the free software",
                                          "  modify the program, copy the source caf\xc3\xa9.",
                                          "zebra quartz 123 \xe2\x82\xac"};
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  write_file(f.dir.file("in.txt"), text);
  const auto r = test::run_command("/usr/bin/spm_encode --model=" + f.dir.file("m.model") +
                                   " --output_format=id < " + f.dir.file("in.txt"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::istringstream out(r.output);
  for (const auto& l : lines) {
    std::string got;
    ASSERT_TRUE(std::getline(out, got)) << r.output;
    std::ostringstream want;
    for (int32_t id : tok.encode(l)) want << (want.tellp() > 0 ? " " : "") << id;
    EXPECT_EQ(got, want.str()) << l;
  }
}

TEST(Tokenizer, RefusesWhatItCannotEncodeExactly) {
  SpmFile f("bpe");
  const TokenData d = read_token_file(f.path, 320, 8);
  const Tokenizer tok = Tokenizer::from_stored(d.tokenizer, d.tokenizer_model, d.vocab_size, "t");
  expect_usage_error([&] { tok.encode(std::string("ok \xff\xfe")); },
                     {"not valid UTF-8", "byte offset 3"}, "invalid UTF-8");
  expect_usage_error([&] { tok.encode(std::string("a\xc3")); }, {"byte offset 1"}, "cut char");
  expect_usage_error([&] { tok.encode(std::string("\xed\xa0\x80")); }, {"byte offset 0"},
                     "surrogate");
  // U+2581 (a prompt to `sample`): SentencePiece's space mark, not a normalization (as said).
  expect_usage_error(
      [&] {
        tok.encode(
            std::string("a\xe2\x96\x81"
                        "b"));
      },
      {"U+2581", "mark for a space"}, "space mark");
  // Byte fallback: a character never seen in training still encodes, exactly.
  const std::string rare = "\xe4\xb8\xad\xf0\x9f\x98\x80";
  EXPECT_EQ(tok.decode(tok.encode(rare)), rare);
  const Tokenizer ids = Tokenizer::imported(100);
  expect_usage_error([&] { ids.encode("x"); }, {"'imported'", "no text"}, "imported");
  EXPECT_EQ(ids.decode(std::vector<int32_t>{3, 14, 15}), "3 14 15");
  EXPECT_EQ(first_invalid_utf8("plain \xc3\xa9"), -1);
}

// A bpe prepare of `lines` lines of corpus() in dir/a.txt into dir/t.h5 (no --vocab-size yet).
PrepareOptions bpe_prepare(const test::TempDir& dir, int lines) {
  write_file(dir.file("a.txt"), corpus(lines, 1));
  PrepareOptions opt;
  opt.inputs = {dir.file("a.txt")};
  opt.output = dir.file("t.h5");
  opt.tokenizer = "bpe";
  return opt;
}

TEST(Tokenizer, PrepareOptionsNameTheProblem) {
  test::TempDir dir;
  PrepareOptions opt = bpe_prepare(dir, 100);
  expect_usage_error([&] { prepare_token_file(opt); }, {"--vocab-size"}, "bpe without vocab");
  opt.vocab_size = 100;  // fewer than the 3 control + 256 byte pieces
  expect_usage_error([&] { prepare_token_file(opt); },
                     {"--vocab-size 100", "is too small", "use --vocab-size"}, "vocab too small");
  opt.vocab_size = 1000000;  // more pieces than the text has
  expect_usage_error([&] { prepare_token_file(opt); },
                     {"--vocab-size 1000000 is more pieces", "or less"}, "too large");
  // Past SentencePiece's int32: refused before the text is read (its "cannot parse
  // \"5000000000\" as int" after reading it, before).
  opt.vocab_size = 5000000000;
  expect_usage_error([&] { prepare_token_file(opt); },
                     {"--vocab-size 5000000000 is too large", "at most 2147483647"}, "past int32");
  // Below the 260 pieces every tokenizer holds: SentencePiece's internal error before.
  opt.vocab_size = 2;
  expect_usage_error([&] { prepare_token_file(opt); },
                     {"--vocab-size 2 is too small", "use --vocab-size 260 or more"}, "vocab 2");
  opt.vocab_size = -5;
  expect_usage_error([&] { prepare_token_file(opt); }, {"needs --vocab-size N", "got -5"},
                     "negative vocab");
  opt.tokenizer = "bytes";
  opt.vocab_size = 300;
  expect_usage_error([&] { prepare_token_file(opt); }, {"--vocab-size 300", "bytes"},
                     "bytes with vocab");
  // Nothing is trained for bytes: the option was ignored without a word.
  opt.vocab_size = 0;
  opt.train_sentences = 500;
  expect_usage_error([&] { prepare_token_file(opt); },
                     {"--train-sentences with --tokenizer bytes", "leave out"}, "bytes sentences");
  opt.train_sentences.reset();
  opt.tokenizer = "wordpiece";
  expect_usage_error([&] { prepare_token_file(opt); }, {"wordpiece"}, "unknown tokenizer");
  EXPECT_FALSE(fs::exists(opt.output));
  EXPECT_FALSE(fs::exists(opt.output + ".tmp"));
}

// SentencePiece skips a sentence past 64 KiB without a word: a text without newlines trained on
// nothing (exit 2 blaming --vocab-size). Long lines are cut into pieces for training, at a space
// or, in a line without one, between characters; the file still decodes to the text.
TEST(Tokenizer, LongLinesAreCutForTrainingNotSkipped) {
  test::TempDir dir;
  std::string spaced = corpus(3000, 0);  // ~200 KB
  std::replace(spaced.begin(), spaced.end(), '\n', ' ');
  std::string dense;  // 3-byte characters and no space: ~150 KB
  for (int i = 0; i < 50000; ++i) dense += i % 3 ? "\xe6\x97\xa5" : "\xe8\xaa\x9e";
  EXPECT_EQ(count_sentences({spaced}), 4);  // cut at spaces in each piece's second half
  EXPECT_EQ(count_sentences({dense}), 3);   // 65535-byte pieces: whole characters
  // The dense text has two characters, so fewer pieces to learn.
  for (const auto& [name, text, vocab] :
       {std::tuple{"spaced", spaced, 300}, std::tuple{"dense", dense, 270}}) {
    write_file(dir.file(std::string(name) + ".txt"), text);
    PrepareOptions opt;
    opt.inputs = {dir.file(std::string(name) + ".txt")};
    opt.output = dir.file(std::string(name) + ".h5");
    opt.tokenizer = "bpe";
    opt.vocab_size = vocab;
    ASSERT_NO_THROW(prepare_token_file(opt)) << name;
    const TokenData d = read_token_file(opt.output, vocab, 8);
    std::vector<int32_t> all(d.train.begin(), d.train.end());
    all.insert(all.end(), d.val.begin(), d.val.end());
    EXPECT_EQ(
        Tokenizer::from_stored(d.tokenizer, d.tokenizer_model, d.vocab_size, name).decode(all),
        text)
        << name;
  }
}

// Encoding cuts a line longer than 64 KiB into pieces (SentencePiece took 1.85 GB for one 11 MB
// line): before a space, where the ids are those of the whole text (pieces never cross a space;
// compared with one encode of the whole train part), else between characters, where the text
// still decodes exactly.
TEST(Tokenizer, LongLinesAreEncodedInPiecesWithTheWholeTextsIds) {
  test::TempDir dir;
  SpmFile f("bpe");  // its tokenizer
  const Tokenizer tok = [&] {
    const TokenData d = read_token_file(f.path, 320, 8);
    return Tokenizer::from_stored(d.tokenizer, d.tokenizer_model, d.vocab_size, "t");
  }();
  std::string spaced = corpus(4000, 3);  // ~280 KB
  std::replace(spaced.begin(), spaced.end(), '\n', ' ');
  spaced = corpus(20, 1) + spaced + "\n" + corpus(20, 2);
  std::string dense = corpus(5, 0);
  for (int i = 0; i < 40000; ++i) dense += "caf\xc3\xa9";  // 200 KB without a space
  for (const auto& [name, text] : {std::pair{"spaced", spaced}, std::pair{"dense", dense}}) {
    write_file(dir.file(std::string(name) + ".txt"), text);
    PrepareOptions opt;
    opt.inputs = {dir.file(std::string(name) + ".txt")};
    opt.output = dir.file(std::string(name) + ".h5");
    opt.tokenizer_model = dir.file("model");
    {
      const TokenData d = read_token_file(f.path, 320, 8);
      write_file(opt.tokenizer_model, d.tokenizer_model);
    }
    opt.encode_block_bytes = 4096;
    ASSERT_NO_THROW(prepare_token_file(opt)) << name;
    const TokenData d = read_token_file(opt.output, 320, 8);
    size_t split = text.size() - static_cast<size_t>(static_cast<double>(text.size()) * 0.1);
    while (split < text.size() && (static_cast<unsigned char>(text[split]) & 0xC0) == 0x80) ++split;
    EXPECT_EQ(tok.decode(d.train), text.substr(0, split)) << name;
    EXPECT_EQ(tok.decode(d.val), text.substr(split)) << name;
    if (std::string(name) == "spaced") {
      const std::vector<int32_t> whole = tok.encode(text.substr(0, split));
      EXPECT_TRUE(d.train == whole) << d.train.size() << " ids against " << whole.size();
    }
  }
}

// The peak resident memory of a child process that runs `fn` (fork, wait4's rusage).
double child_peak_bytes(const std::function<void()>& fn) {
  const pid_t pid = fork();
  if (pid == 0) {
    try {
      fn();
    } catch (...) {
      _exit(1);
    }
    _exit(0);
  }
  int status = 0;
  rusage u{};
  if (pid < 0 || wait4(pid, &status, 0, &u) != pid || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0)
    return -1;
  return static_cast<double>(u.ru_maxrss) * 1024.0;
}

// ... and its memory stays that of the same text in short lines: encoded whole, one 2.5 MB line
// took 285 MiB against 160 (and 730 MB against 220 at 5 MB, 1.85 GB at 11 MB).
TEST(Tokenizer, ALongLineTakesTheMemoryOfShortOnes) {
  test::TempDir dir;
  SpmFile f("bpe");
  {
    const TokenData d = read_token_file(f.path, 320, 8);
    write_file(dir.file("model"), d.tokenizer_model);
  }
  std::string line = corpus(36000, 4);  // ~2.5 MB
  std::replace(line.begin(), line.end(), '\n', ' ');
  std::string lines = line;
  for (size_t i = 80; i < lines.size(); i += 80) {
    const size_t space = lines.rfind(' ', i);
    if (space != std::string::npos && space > i - 80) lines[space] = '\n';
  }
  auto peak = [&](const std::string& text, const std::string& name) {
    write_file(dir.file(name + ".txt"), text);
    return child_peak_bytes([&] {
      PrepareOptions opt;
      opt.inputs = {dir.file(name + ".txt")};
      opt.output = dir.file(name + ".h5");
      opt.tokenizer_model = dir.file("model");
      prepare_token_file(opt);
    });
  };
  const double short_lines = peak(lines, "lines"), one_line = peak(line, "line");
  ASSERT_GT(short_lines, 0);
  ASSERT_GT(one_line, 0);
  EXPECT_LT(one_line, 1.3 * short_lines)
      << one_line / 1048576 << " MiB against " << short_lines / 1048576 << " MiB";
}

// Text that is not UTF-8 is refused before SentencePiece trains (minutes on a large corpus), at
// its offset in the file: here in the val part, past the train text's 4 000-odd bytes.
TEST(Tokenizer, PrepareRefusesTextThatIsNotUtf8BeforeTraining) {
  test::TempDir dir;
  PrepareOptions opt = bpe_prepare(dir, 100);
  std::string text = corpus(100, 1);
  const size_t at = text.size() - 10;
  text[at] = '\xe9';  // Latin-1 e-acute
  write_file(opt.inputs[0], text);
  opt.vocab_size = 300;
  std::string said;
  opt.on_progress = [&](const std::string& line) { said += line + "\n"; };
  expect_usage_error([&] { prepare_token_file(opt); },
                     {"'" + opt.inputs[0] + "'",
                      "not valid UTF-8 at byte offset " + std::to_string(at), "--tokenizer bytes"},
                     "Latin-1");
  EXPECT_EQ(said.find("training the"), std::string::npos) << said;
  EXPECT_FALSE(fs::exists(opt.output));
}

// U+2581 is SentencePiece's space: a tokenizer it trains gives it back as ' '. Refused before
// training, at its offset, for both kinds (it was refused after training, as "normalization").
TEST(Tokenizer, PrepareRefusesTheSpaceMarkBeforeTraining) {
  for (const char* kind : {"bpe", "unigram"}) {
    test::TempDir dir;
    PrepareOptions opt = bpe_prepare(dir, 100);
    opt.tokenizer = kind;
    opt.vocab_size = 300;
    std::string text = corpus(100, 1);
    const size_t at = 40;
    text.insert(at, "\xE2\x96\x81");
    write_file(opt.inputs[0], text);
    std::string said;
    opt.on_progress = [&](const std::string& line) { said += line + "\n"; };
    expect_usage_error([&] { prepare_token_file(opt); },
                       {"'" + opt.inputs[0] + "'", "U+2581", "byte offset " + std::to_string(at),
                        "--tokenizer bytes"},
                       kind);
    EXPECT_EQ(said.find("training the"), std::string::npos) << said;
    EXPECT_FALSE(fs::exists(opt.output));
  }
}

TEST(Tokenizer, DamagedModelInATokenFileIsUsageError) {
  SpmFile f("bpe");
  {
    h5::File file{H5Fopen(f.path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)};
    ASSERT_GE(H5Ldelete(file, "/tokenizer/model", H5P_DEFAULT), 0);
  }
  expect_usage_error([&] { read_token_file(f.path, 320, 8); },
                     {f.path, "/tokenizer/model is missing"}, "no model");
  {
    h5::File file{H5Fopen(f.path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)};
    const hsize_t n = 16;
    h5::Dataspace space{H5Screate_simple(1, &n, nullptr)};
    h5::Dataset ds{H5Dcreate2(file, "/tokenizer/model", H5T_STD_U8LE, space, H5P_DEFAULT,
                              H5P_DEFAULT, H5P_DEFAULT)};
    const std::string junk(16, '\x7f');
    ASSERT_GE(H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, junk.data()), 0);
  }
  expect_usage_error([&] { read_token_file(f.path, 320, 8); }, {f.path, "does not load"},
                     "junk model");
}

// The byte tokenizer (SPEC section 8, "bytes"): id = the byte's unsigned value, every byte
// 0..255 round-trips, and a decode skips ids outside 0..255 (a model whose vocab_size is larger
// can sample them) instead of writing some byte for them.
TEST(Tokenizer, BytesAreTheirOwnIdsAndDecodeSkipsOthers) {
  const Tokenizer tok = Tokenizer::bytes();
  EXPECT_EQ(tok.vocab_size(), 256);
  EXPECT_EQ(tok.name(), "bytes");
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  const std::vector<int32_t> ids = tok.encode(all);
  ASSERT_EQ(ids.size(), 256u);
  for (int b = 0; b < 256; ++b) EXPECT_EQ(ids[static_cast<size_t>(b)], b);
  EXPECT_EQ(tok.decode(ids), all);
  EXPECT_EQ(tok.decode(std::vector<int32_t>{104, 256, 300, -1, 105}), "hi");
}

// The tokenizer attribute decides (SPEC section 8): none stored (a file from before it was
// stored) is the byte tokenizer; another tool's name keeps its ids with no text.
TEST(Tokenizer, FromStoredFollowsTheAttribute) {
  const Tokenizer none = Tokenizer::from_stored("", "", 256, "t");
  EXPECT_EQ(none.name(), "bytes");
  EXPECT_EQ(none.encode("hi"), (std::vector<int32_t>{104, 105}));
  const Tokenizer other = Tokenizer::from_stored("gpt2", "", 50257, "t");
  EXPECT_EQ(other.name(), "gpt2");
  EXPECT_EQ(other.vocab_size(), 50257);
  expect_usage_error([&] { other.encode("hi"); }, {"'gpt2'", "no text"}, "other tool");
}

// A stored SentencePiece model from another tool need not be lossless: without byte fallback a
// character it never saw becomes <unk>, which decodes to something else. encode() must refuse
// such a text at the first byte that would read differently, not return the <unk> ids.
TEST(Tokenizer, AModelThatCannotRepresentTheTextIsRefused) {
  test::TempDir dir;
  std::string text;
  for (int i = 0; i < 200; ++i) text += "abc abd abe bcd bce cde\n";
  write_file(dir.file("in.txt"), text);
  std::string model;
  const auto status =
      sentencepiece::SentencePieceTrainer::Train({{"input", dir.file("in.txt")},
                                                  {"model_type", "bpe"},
                                                  {"vocab_size", "20"},
                                                  {"byte_fallback", "false"},
                                                  {"normalization_rule_name", "identity"},
                                                  {"minloglevel", "2"}},
                                                 nullptr, &model);
  ASSERT_TRUE(status.ok()) << status.ToString();
  const Tokenizer tok = Tokenizer::sentencepiece(model, "t");
  EXPECT_FALSE(tok.encode("abc bcd").empty());
  expect_usage_error([&] { tok.encode("ab\xe2\x82\xac"); },  // "ab€": € was never seen
                     {"cannot encode the text exactly", "byte offset 2"}, "unknown character");
}

// first_invalid_utf8 (what the SentencePiece encoder refuses up front) by the UTF-8 definition:
// the offset of the first byte that starts no valid sequence -- overlong forms, surrogates, code
// points past U+10FFFF, stray continuation bytes and cut sequences -- and -1 for valid text with
// sequences of every length, the largest code point included.
TEST(Tokenizer, FirstInvalidUtf8ByTheDefinition) {
  EXPECT_EQ(first_invalid_utf8(
                "a\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf"),
            -1);
  EXPECT_EQ(first_invalid_utf8("ab\xc1\xbf"), 2);                     // overlong 2-byte (U+007F)
  EXPECT_EQ(first_invalid_utf8("ab\xe0\x9f\xbf"), 2);                 // overlong 3-byte (U+07FF)
  EXPECT_EQ(first_invalid_utf8("ab\xf0\x8f\xbf\xbf"), 2);             // overlong 4-byte (U+FFFF)
  EXPECT_EQ(first_invalid_utf8("x\xed\x9f\xbf\xed\xbf\xbf"), 4);      // U+D7FF ok, U+DFFF not
  EXPECT_EQ(first_invalid_utf8("x\xee\x80\x80\xf4\x90\x80\x80"), 4);  // U+E000 ok, U+110000 not
  EXPECT_EQ(first_invalid_utf8("x\x80"), 1);                          // a stray continuation byte
  EXPECT_EQ(first_invalid_utf8("x\xf8\x88\x80\x80\x80"), 1);          // 5-byte forms do not exist
  EXPECT_EQ(first_invalid_utf8("xy\xe2\x82"), 2);                     // cut at the end
  EXPECT_EQ(first_invalid_utf8("xy\xe2\x28\xa1"), 2);                 // a non-continuation inside
}

// SentencePiece training and encoding say what they do: they take minutes on a real corpus.
TEST(Tokenizer, PrepareSaysWhatItDoes) {
  test::TempDir dir;
  PrepareOptions opt = bpe_prepare(dir, 400);
  opt.vocab_size = 300;
  opt.train_sentences = 100;  // SentencePiece needs more than 100
  expect_usage_error([&] { prepare_token_file(opt); }, {"--train-sentences 100"}, "sample 100");
  opt.train_sentences = 200;
  std::string said;
  opt.on_progress = [&](const std::string& line) { said += line + "\n"; };
  const PrepareReport r = prepare_token_file(opt);
  const std::vector<std::string> parts = {
      "read 1 input file(s)", "training the bpe tokenizer (300 pieces) on a random sample of 200",
      "trained the tokenizer in",
      "encoded " + std::to_string(r.train_tokens + r.val_tokens) + " tokens in"};
  for (const std::string& part : parts)
    EXPECT_NE(said.find(part), std::string::npos) << part << " not in:\n" << said;
}

}  // namespace
}  // namespace sy
