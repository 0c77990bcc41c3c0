// Token files (SPEC section 8) written by prepare: the round trip read back against splits
// computed here and against the file as the HDF5 API sees it, the writer's all-or-nothing commit
// and its lock against a second writer, and every bad input of prepare, each a UsageError naming
// the file and the problem. Files made by hand and read: test_tokens.cpp.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "common/expect_error.h"
#include "common/file_text.h"
#include "common/temp_dir.h"
#include "src/core/error.h"
#include "src/core/h5.h"
#include "src/data/tokens.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

std::vector<int32_t> as_tokens(const std::string& s) {
  std::vector<int32_t> t;
  for (char c : s) t.push_back(static_cast<unsigned char>(c));
  return t;
}

using test::expect_usage_error;

TEST(Prepare, SplitsEachFileAtItsEndAndRoundTrips) {
  test::TempDir dir;
  // Every byte value appears (0 and 255 included): the tokenizer is the identity on bytes.
  std::string a;
  for (int i = 0; i < 300; ++i) a.push_back(static_cast<char>(i % 256));
  const std::string b = "the quick brown fox jumps over the lazy dog, 57 bytes ok.";
  ASSERT_EQ(b.size(), 57u);
  test::write_file(dir.file("a.bin"), a);
  test::write_file(dir.file("b.txt"), b);

  PrepareOptions opt;
  opt.inputs = {dir.file("a.bin"), dir.file("b.txt")};
  opt.output = dir.file("tok.h5");
  opt.val_fraction = 0.1;
  const PrepareReport rep = prepare_token_file(opt);

  // floor(300 * 0.1) = 30 and floor(57 * 0.1) = 5 bytes go to /val, from each file's end.
  const std::vector<int32_t> want_train = as_tokens(a.substr(0, 270) + b.substr(0, 52));
  const std::vector<int32_t> want_val = as_tokens(a.substr(270) + b.substr(52));
  EXPECT_EQ(rep.train_tokens, 322);
  EXPECT_EQ(rep.val_tokens, 35);
  EXPECT_EQ(rep.vocab_size, 256);
  EXPECT_EQ(rep.tokenizer, "bytes");
  EXPECT_FALSE(fs::exists(opt.output + ".tmp"));

  const TokenData d = read_token_file(opt.output, 256, 8);
  EXPECT_EQ(d.train, want_train);
  EXPECT_EQ(d.val, want_val);
  EXPECT_EQ(d.vocab_size, 256);
  EXPECT_EQ(d.tokenizer, "bytes");

  // The file as any HDF5 reader sees it: 1-D little-endian uint16 datasets and the attributes.
  h5::File f{H5Fopen(opt.output.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT)};
  ASSERT_GE(f.get(), 0);
  for (const auto& [name, want] : {std::pair{"train", &want_train}, std::pair{"val", &want_val}}) {
    h5::Dataset ds{H5Dopen2(f, name, H5P_DEFAULT)};
    ASSERT_GE(ds.get(), 0) << name;
    h5::Datatype type{H5Dget_type(ds)};
    EXPECT_GT(H5Tequal(type, H5T_STD_U16LE), 0) << name;
    h5::Dataspace space{H5Dget_space(ds)};
    EXPECT_EQ(H5Sget_simple_extent_ndims(space), 1);
    std::vector<uint16_t> raw(want->size());
    hsize_t n = 0;
    H5Sget_simple_extent_dims(space, &n, nullptr);
    ASSERT_EQ(n, want->size()) << name;
    ASSERT_GE(H5Dread(ds, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()), 0);
    for (size_t i = 0; i < raw.size(); ++i) ASSERT_EQ(raw[i], (*want)[i]) << name << " " << i;
  }
  h5::Attribute vocab{H5Aopen(f, "vocab_size", H5P_DEFAULT)};
  int64_t v = 0;
  ASSERT_GE(H5Aread(vocab, H5T_NATIVE_INT64, &v), 0);
  EXPECT_EQ(v, 256);
  h5::Attribute tok{H5Aopen(f, "tokenizer", H5P_DEFAULT)};
  h5::Datatype tok_type{H5Aget_type(tok)};
  EXPECT_EQ(H5Tget_class(tok_type), H5T_STRING);
}

TEST(Prepare, UnigramEntropyOfHandCountedSplits) {
  EXPECT_EQ(unigram_entropy_nats({}), 0.0);
  EXPECT_EQ(unigram_entropy_nats({7, 7, 7}), 0.0);
  EXPECT_NEAR(unigram_entropy_nats({0, 0, 1, 1}), std::log(2.0), 1e-15);
  // p = (1/2, 1/4, 1/4): H = 1/2 ln 2 + 2 * 1/4 ln 4 = 1.5 ln 2.
  EXPECT_NEAR(unigram_entropy_nats({9, 3, 9, 200}), 1.5 * std::log(2.0), 1e-15);

  test::TempDir dir;
  test::write_file(dir.file("t.txt"), "aabbaaaaab");  // train "aabbaaaaa" (9), val "b" (1)
  PrepareOptions opt;
  opt.inputs = {dir.file("t.txt")};
  opt.output = dir.file("t.h5");
  const PrepareReport rep = prepare_token_file(opt);
  const double p = 7.0 / 9.0, q = 2.0 / 9.0;
  EXPECT_NEAR(rep.train_unigram_nats, -p * std::log(p) - q * std::log(q), 1e-15);
  EXPECT_EQ(rep.val_unigram_nats, 0.0);
}

TEST(Prepare, InputOrderIsKeptAndZeroValFractionIsRefused) {
  test::TempDir dir;
  test::write_file(dir.file("x"), "XXXXXXXXXXXXXXXXXXXX");
  test::write_file(dir.file("y"), "yyyyyyyyyy");
  PrepareOptions opt;
  opt.inputs = {dir.file("y"), dir.file("x")};
  opt.output = dir.file("t.h5");
  opt.val_fraction = 0.5;
  prepare_token_file(opt);
  TokenData d = read_token_file(opt.output, 256, 4);
  EXPECT_EQ(d.train, as_tokens("yyyyyXXXXXXXXXX"));
  EXPECT_EQ(d.val, as_tokens("yyyyyXXXXXXXXXX"));

  // An empty /val, which `train` would refuse later, is refused before any work; the file made
  // above stays as it was.
  opt.val_fraction = 0.0;
  expect_usage_error([&] { prepare_token_file(opt); }, {"--val-fraction 0 leaves", "/val"},
                     "empty val");
  EXPECT_EQ(read_token_file(opt.output, 256, 4).val, as_tokens("yyyyyXXXXXXXXXX"));
  opt.val_fraction = 0.01;  // floor(10 * 0.01) = floor(20 * 0.01) = 0 bytes held out
  expect_usage_error([&] { prepare_token_file(opt); }, {"--val-fraction 0.01 of", "/val"},
                     "val rounds to nothing");
}

// A writer given up before its commit (an error between its first write and the end) leaves no
// file and no .tmp, and the HDF5 library it used still works.
TEST(TokenFileWriter, AWriterGivenUpLeavesNothing) {
  test::TempDir dir;
  const std::string path = dir.file("t.h5");
  {
    TokenFileWriter w(path, 256, token_file_bytes(256, 300000, 0));
    std::vector<uint32_t> ids(300000, 7);
    w.append_train(ids);
    w.append_val(std::span<const uint32_t>(ids).first(1000));
    EXPECT_TRUE(fs::exists(path + ".tmp"));
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  PrepareOptions opt;  // and the next file is written as usual
  test::write_file(dir.file("a.txt"), "0123456789abcdefghij");
  opt.inputs = {dir.file("a.txt")};
  opt.output = path;
  opt.val_fraction = 0.5;
  prepare_token_file(opt);
  EXPECT_EQ(read_token_file(path, 256, 4).train, as_tokens("0123456789"));
}

// A second writer of the same token file (another data import or prepare to that name) is
// refused while the first writes, and the first's file is whole: HDF5 emptied the .tmp (O_TRUNC)
// before its own lock refused the second, and the first published zeros in place of its tokens.
// Also where HDF5's lock is off (HDF5_USE_FILE_LOCKING=FALSE, as on many parallel file systems).
TEST(TokenFileWriter, ASecondWriterIsRefusedAndTheFirstsFileIsWhole) {
  for (const bool hdf5_lock_off : {false, true}) {
    if (hdf5_lock_off) setenv("HDF5_USE_FILE_LOCKING", "FALSE", 1);
    test::TempDir dir;
    const std::string path = dir.file("t.h5");
    std::vector<uint32_t> ids(5000);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<uint32_t>(1 + i % 200);
    TokenFileWriter first(path, 256, token_file_bytes(256, 10000, 0));
    first.append_train(ids);
    try {
      TokenFileWriter second(path, 256, token_file_bytes(256, 10, 0));
      ADD_FAILURE() << "a second writer of " << path << " was let in";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), kExitOther) << e.what();
      EXPECT_NE(std::string(e.what()).find("another process is writing '" + path + "'"),
                std::string::npos)
          << e.what();
    }
    first.append_val(std::span<const uint32_t>(ids).first(100));
    first.commit(Tokenizer::bytes());
    const TokenData d = read_token_file(path, 256, 4);
    ASSERT_EQ(d.train.size(), ids.size());
    EXPECT_EQ(d.train[0], 1);
    EXPECT_EQ(d.train[4999], static_cast<int32_t>(1 + 4999 % 200));
    EXPECT_FALSE(fs::exists(path + ".tmp"));
  }
  unsetenv("HDF5_USE_FILE_LOCKING");
}

// An input changed between the two reads (while a tokenizer trains, which takes minutes on a
// large corpus) is refused, also when its size stays: QA wrote a U+2581 in place after pass 1's
// check, and the file decoded it as a space, exit 0. Here the byte changes when pass 1 reports.
TEST(Prepare, AnInputChangedInPlaceBetweenTheReadsIsRefused) {
  test::TempDir dir;
  test::write_file(dir.file("a.txt"), "some text to keep, then more of it\n");
  PrepareOptions opt;
  opt.inputs = {dir.file("a.txt")};
  opt.output = dir.file("a.h5");
  opt.on_progress = [&](const std::string& line) {
    if (line.starts_with("read "))
      test::write_file(dir.file("a.txt"), "some text to keep, than more of it\n");
  };
  expect_usage_error([&] { prepare_token_file(opt); },
                     {"input file '" + dir.file("a.txt") + "' changed while data prepare read it",
                      "the same 35 bytes, other values"},
                     "same size");
  EXPECT_FALSE(fs::exists(opt.output));
  opt.on_progress = nullptr;  // unchanged: written
  prepare_token_file(opt);
  EXPECT_TRUE(fs::exists(opt.output));
}

// An output that is one of the inputs would overwrite the text with the token file.
TEST(Prepare, AnOutputThatIsAnInputIsRefused) {
  test::TempDir dir;
  test::write_file(dir.file("a.txt"), "some text to keep\n");
  PrepareOptions opt;
  opt.inputs = {dir.file("a.txt")};
  opt.output = dir.file("./a.txt");
  expect_usage_error([&] { prepare_token_file(opt); }, {"a.txt", "overwrite"}, "output = input");
  EXPECT_EQ(test::read_file(dir.file("a.txt")), "some text to keep\n");
}

TEST(Prepare, BadInputsNameTheFile) {
  test::TempDir dir;
  test::write_file(dir.file("ok.txt"), "some text");
  test::write_file(dir.file("empty.txt"), "");
  auto prep = [&](std::vector<std::string> in, std::string out, double frac = 0.1) {
    return [=] {
      PrepareOptions o;
      o.inputs = in;
      o.output = out;
      o.val_fraction = frac;
      prepare_token_file(o);
    };
  };
  const std::string out = dir.file("o.h5");
  expect_usage_error(prep({dir.file("missing.txt")}, out), {"missing.txt", "not found"}, "missing");
  expect_usage_error(prep({dir.file("ok.txt"), dir.file("empty.txt")}, out), {"empty.txt", "empty"},
                     "empty");
  // Every empty input in one message (QA: 12 empty files among 300 took 12 runs to find).
  test::write_file(dir.file("empty2.txt"), "");
  expect_usage_error(prep({dir.file("empty.txt"), dir.file("ok.txt"), dir.file("empty2.txt")}, out),
                     {"2 input files are empty: '" + dir.file("empty.txt") + "', '" +
                      dir.file("empty2.txt") + "'"},
                     "two empty");
  expect_usage_error(prep({dir.path().string()}, out), {"is a directory"}, "dir input");
  // A token file given as an input was read as text (its ids with it), the val entropy 0.0000,
  // unsaid (QA); a compressed text likewise. Their signatures say they are not text.
  const std::string text(400, 'a');
  test::write_file(dir.file("long.txt"), text);
  prep({dir.file("long.txt")}, dir.file("tokens.h5"))();
  expect_usage_error(prep({dir.file("long.txt"), dir.file("tokens.h5")}, out),
                     {"input file '" + dir.file("tokens.h5") + "' is an HDF5 file, not text"},
                     "a token file as input");
  test::write_file(dir.file("t.txt.gz"), std::string("\x1f\x8b\x08\x00", 4) + text);
  expect_usage_error(prep({dir.file("t.txt.gz")}, out), {"t.txt.gz' is gzip-compressed, not text"},
                     "gzip input");
  // Refused from its first bytes: a 64 GiB (sparse) one was read whole first (1.5 GB held for
  // a 1.5 GB file before the message).
  {
    std::ofstream big(dir.file("big.h5"), std::ios::binary);
    big << std::string("\x89HDF\r\n\x1a\n", 8);
  }
  std::filesystem::resize_file(dir.file("big.h5"), uintmax_t{64} << 30);
  expect_usage_error(prep({dir.file("big.h5")}, out), {"big.h5' is an HDF5 file, not text"},
                     "a 64 GiB token file");
  // An llm.c shard (what `data import` reads), bzip2 and tar.
  test::write_file(dir.file("fw.bin"), std::string("\x88\xd8\x34\x01\x01\x00\x00\x00", 8) + text);
  expect_usage_error(prep({dir.file("fw.bin")}, out), {"fw.bin' is an llm.c token shard"},
                     "llm.c shard");
  test::write_file(dir.file("t.bz2"), "BZh91AY&SY" + text);
  expect_usage_error(prep({dir.file("t.bz2")}, out), {"t.bz2' is bzip2-compressed"}, "bzip2");
  std::string tar(512, '\0');
  tar.replace(0, 5, "a.txt");
  tar.replace(257, 6, std::string("ustar\0", 6));
  test::write_file(dir.file("t.tar"), tar + text);
  expect_usage_error(prep({dir.file("t.tar")}, out), {"t.tar' is a tar archive"}, "tar");
  test::write_file(dir.file("pk.txt"), "PK is a fine start of a line\n" + text);
  prep({dir.file("pk.txt")}, dir.file("pk.h5"))();  // text that starts like a signature
  expect_usage_error(prep({dir.file("ok.txt")}, dir.file("nodir/o.h5")),
                     {"nodir", "does not exist"}, "no out dir");
  expect_usage_error(prep({dir.file("ok.txt")}, dir.path().string()), {"is a directory"},
                     "out is dir");
  // A directory that takes no files (/proc, for root too): before the work, not after it.
  expect_usage_error(prep({dir.file("ok.txt")}, "/proc/o.h5"), {"cannot create files in '/proc'"},
                     "unwritable out dir");
  expect_usage_error(prep({dir.file("ok.txt")}, dir.file("ok.txt/o.h5")),
                     {dir.file("ok.txt"), "is not a directory (a regular file is in"},
                     "a file where the directory goes");
  expect_usage_error(prep({}, out), {"no input"}, "no inputs");
  expect_usage_error(prep({dir.file("ok.txt")}, out, 1.0), {"val_fraction"}, "fraction 1");
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out + ".tmp"));
}

}  // namespace
}  // namespace sy
