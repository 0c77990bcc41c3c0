// Token files (SPEC section 8) as the reader meets them: files built by hand with the HDF5 C API,
// one defect each, every one of which must be a UsageError naming the file and the problem (never
// a crash or HDF5 spew); other integer types and tools' names that are read; the trainer's reader
// reading ranges from the file. Files written by prepare: test_prepare.cpp.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/damage.h"
#include "common/expect_error.h"
#include "common/file_text.h"
#include "common/temp_dir.h"
#include "src/core/error.h"
#include "src/core/h5.h"
#include "src/data/loader.h"
#include "src/data/tokens.h"

namespace sy {
namespace {

using test::expect_usage_error;

// ---- hand-made token files, one defect each ----------------------------------------------------

// Builds an HDF5 file with the C API directly, so each test states the defect it plants.
class Builder {
 public:
  explicit Builder(const std::string& path)
      : file_(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) {}

  template <class T>
  Builder& dataset(const char* name, hid_t file_type, hid_t mem_type, const std::vector<T>& data,
                   std::vector<hsize_t> dims = {}) {
    if (dims.empty()) dims = {data.size()};
    h5::Dataspace space{H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr)};
    h5::Dataset ds{
        H5Dcreate2(file_, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)};
    if (!data.empty()) H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data());
    return *this;
  }
  Builder& tokens(const char* name, int n, int value_base = 0) {
    std::vector<uint16_t> t(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) t[i] = static_cast<uint16_t>((value_base + i * 7) % 256);
    return dataset(name, H5T_STD_U16LE, H5T_NATIVE_UINT16, t);
  }
  // Chunked with a Fletcher32 checksum per chunk, as another tool may write it.
  Builder& checked_tokens(const char* name, int n) {
    std::vector<uint16_t> t(static_cast<size_t>(n), 5);
    const hsize_t dims = t.size(), chunk = 8;
    h5::Dataspace space{H5Screate_simple(1, &dims, nullptr)};
    h5::PropList dcpl{H5Pcreate(H5P_DATASET_CREATE)};
    H5Pset_chunk(dcpl, 1, &chunk);
    H5Pset_fletcher32(dcpl);
    h5::Dataset ds{H5Dcreate2(file_, name, H5T_STD_U16LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT)};
    H5Dwrite(ds, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data());
    return *this;
  }
  Builder& group(const char* name) {
    h5::Group g{H5Gcreate2(file_, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)};
    return *this;
  }
  Builder& int_attr(const char* name, int64_t v) {
    h5::Dataspace s{H5Screate(H5S_SCALAR)};
    h5::Attribute a{H5Acreate2(file_, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT)};
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    return *this;
  }
  Builder& fixed_str_attr(const char* name, const std::string& v) {
    h5::Dataspace s{H5Screate(H5S_SCALAR)};
    h5::Datatype t{H5Tcopy(H5T_C_S1)};
    H5Tset_size(t, std::max<size_t>(1, v.size()));  // "" as one NUL: a size of 0 is refused
    h5::Attribute a{H5Acreate2(file_, name, t, s, H5P_DEFAULT, H5P_DEFAULT)};
    H5Awrite(a, t, v.c_str());
    return *this;
  }
  Builder& named_attrs(const std::string& tokenizer, int64_t vocab = 256) {
    return int_attr("vocab_size", vocab).fixed_str_attr("tokenizer", tokenizer);
  }
  Builder& valid_attrs(int64_t vocab = 256) { return named_attrs("bytes", vocab); }

 private:
  h5::File file_;
};

// The ids carry a checksum per chunk: one damaged byte is refused when the file is read, naming
// it. Before, the changed id (still inside the vocabulary) was trained on without a word (QA: a
// zeroed 4 KiB page of /train became ids 0).
TEST(Prepare, ADamagedChunkOfIdsIsRefusedWhenRead) {
  test::TempDir dir;
  test::write_file(dir.file("a.txt"), std::string(4000, 'x'));
  PrepareOptions opt;
  opt.inputs = {dir.file("a.txt")};
  opt.output = dir.file("tok.h5");
  prepare_token_file(opt);
  ASSERT_EQ(read_token_file(opt.output, 256, 8).train[10], 'x');
  // /train[10]'s low byte: 'x' ^ 0x5A = '"', still an id inside the vocabulary.
  test::xor_byte(opt.output, test::first_chunk(opt.output, "train").first + 2 * 10);
  expect_usage_error([&] { open_token_file(opt.output, 256, 8, /*scan=*/true); },
                     {"tok.h5", "cannot be read"}, "a damaged chunk");
}

TEST(ReadTokens, AcceptsOtherIntegerTypesAndFixedStrings) {
  test::TempDir dir;
  const std::string p = dir.file("wide.h5");
  // A uint32 file with a 70000-token vocabulary, the way an external tokenizer would write it.
  std::vector<uint32_t> train(40), val(20);
  for (size_t i = 0; i < train.size(); ++i) train[i] = static_cast<uint32_t>(i * 1699 % 70000);
  for (size_t i = 0; i < val.size(); ++i) val[i] = 69999 - static_cast<uint32_t>(i);
  Builder(p)
      .dataset("train", H5T_STD_U32LE, H5T_NATIVE_UINT32, train)
      .dataset("val", H5T_STD_I64LE, H5T_NATIVE_UINT32, val)
      .int_attr("vocab_size", 70000)
      .fixed_str_attr("tokenizer", "bpe-70k")
      .group("tokenizer")
      .dataset("tokenizer/model", H5T_STD_U8LE, H5T_NATIVE_UINT8, std::vector<uint8_t>{7, 0, 9});
  const TokenData d = read_token_file(p, 70000, 8);
  // Its model bytes travel with the tokens (a checkpoint copies them, SPEC 8), whatever the name:
  // only "sentencepiece"'s were read (found by QA).
  EXPECT_EQ(d.tokenizer_model, std::string("\x07\x00\x09", 3));
  ASSERT_EQ(d.train.size(), 40u);
  for (size_t i = 0; i < train.size(); ++i) EXPECT_EQ(d.train[i], static_cast<int32_t>(train[i]));
  EXPECT_EQ(d.val.front(), 69999);
  EXPECT_EQ(d.tokenizer, "bpe-70k");
  EXPECT_EQ(d.vocab_size, 70000);
}

// Two edits from a SPEC 8 name is another tokenizer's name, trained on as ids: ByT5's ids are
// byte + 3, and relabelling them "bytes" (as a hint within two edits advised) would decode them
// wrongly (found by review). One edit away or another case is refused (the defects below).
TEST(ReadTokens, OtherToolsNamesNearSpecsAreTrainedOn) {
  test::TempDir dir;
  for (const char* name : {"ByT5", "exported", "bits", "gpt2"}) {
    const std::string p = dir.file(std::string(name) + ".h5");
    Builder(p).tokens("train", 40).tokens("val", 20).named_attrs(name);
    const TokenData d = read_token_file(p, 256, 8);
    EXPECT_EQ(d.tokenizer, name);
    EXPECT_EQ(d.train.size(), 40u) << name;
  }
}

// The trainer's reader leaves the tokens in the file: any range reads the ids written (a uint32
// train split, an int64 val split: HDF5 converts), a loader reading through it fills the batches
// a loader over the ids in memory fills, and an id outside the vocabulary is refused when the
// file is opened with the scan, or else when a read holds it, naming its index either way.
TEST(ReadTokens, TheTrainersReaderReadsRangesFromTheFile) {
  test::TempDir dir;
  std::vector<uint32_t> train(40), val(20);
  for (size_t i = 0; i < train.size(); ++i) train[i] = static_cast<uint32_t>(i * 1699 % 70000);
  for (size_t i = 0; i < val.size(); ++i) val[i] = 69999 - static_cast<uint32_t>(i);
  // uint32 train, int64 val, a 70000-token vocabulary.
  const auto write = [&](const std::string& path) {
    Builder(path)
        .dataset("train", H5T_STD_U32LE, H5T_NATIVE_UINT32, train)
        .dataset("val", H5T_STD_I64LE, H5T_NATIVE_UINT32, val)
        .int_attr("vocab_size", 70000)
        .fixed_str_attr("tokenizer", "bpe-70k");
  };
  const std::string p = dir.file("wide.h5");
  write(p);
  const TokenSource src = open_token_file(p, 70000, 8, /*scan=*/true);
  EXPECT_TRUE(src.scanned);
  ASSERT_EQ(src.train.size(), 40);
  ASSERT_EQ(src.val.size(), 20);
  EXPECT_EQ(src.vocab_size, 70000);
  for (int64_t first : {0, 5, 31}) {
    std::vector<int32_t> got(9);
    src.train.read(first, 9, got.data());
    for (int64_t i = 0; i < 9; ++i)
      EXPECT_EQ(got[static_cast<size_t>(i)], static_cast<int32_t>(train[first + i])) << first;
  }
  std::vector<int32_t> v(20);
  src.val.read(0, 20, v.data());
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(v[i], static_cast<int32_t>(val[i]));

  const std::vector<int32_t> in_memory(train.begin(), train.end());
  BatchLoader from_file([&](int64_t f, int64_t c, int32_t* o) { src.train.read(f, c, o); }, 40, 8,
                        6, 3);
  BatchLoader from_memory(in_memory, 8, 6, 3);
  std::vector<int32_t> a(6 * 9), b(6 * 9);
  for (int64_t step = 0; step < 5; ++step) {
    from_file.fill(step, 0, 6, a.data());
    from_memory.fill(step, 0, 6, b.data());
    EXPECT_EQ(a, b) << step;
  }

  train[30] = 70000;
  const std::string bad = dir.file("bad.h5");
  write(bad);
  expect_usage_error([&] { open_token_file(bad, 70000, 8, true); },
                     {"bad.h5", "/train[30] = 70000 is outside the vocabulary"}, "scanned");
  const TokenSource unscanned = open_token_file(bad, 70000, 8, /*scan=*/false);
  EXPECT_FALSE(unscanned.scanned);
  std::vector<int32_t> w(9);
  unscanned.train.read(0, 9, w.data());  // ids 0..8 are fine
  try {
    unscanned.train.read(25, 9, w.data());
    ADD_FAILURE() << "an id past the vocabulary was read";
  } catch (const UsageError& e) {
    ADD_FAILURE() << "a UsageError, which the trainer takes for one every rank meets: " << e.what();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.h5': /train[30] = 70000 is outside the vocabulary"),
              std::string::npos)
        << e.what();
  }
  // The fingerprint's blocks are the same on every rank (here the whole split): its bad id is
  // the file's, a UsageError (exit 2, agreed), not one rank's own failure.
  expect_usage_error([&] { token_source_fingerprint(unscanned); },
                     {"bad.h5", "/train[30] = 70000 is outside the vocabulary"}, "fingerprint");
}

// One window of seq_len + 1 tokens is the least a split may hold: exactly that loads, one less is
// refused (train's and val's bound alike).
TEST(ReadTokens, ASplitOfExactlyOneWindowLoads) {
  test::TempDir dir;
  Builder(dir.file("one.h5")).tokens("train", 9).tokens("val", 9).valid_attrs();
  const TokenData d = read_token_file(dir.file("one.h5"), 256, 8);
  EXPECT_EQ(d.train.size(), 9u);
  EXPECT_EQ(d.val.size(), 9u);
  Builder(dir.file("short.h5")).tokens("train", 9).tokens("val", 8).valid_attrs();
  expect_usage_error([&] { read_token_file(dir.file("short.h5"), 256, 8); },
                     {"/val holds 8 tokens", "short.h5"}, "val one short");
}

TEST(ReadTokens, EveryDefectIsAUsageErrorNamingFileAndProblem) {
  test::TempDir dir;
  struct Case {
    std::string label;
    std::function<void(const std::string&)> make;  // writes the defective file
    std::vector<std::string> expect;               // substrings of the message
    int64_t model_vocab = 256, seq_len = 8;
  };
  const std::vector<Case> cases = {
      {"not hdf5",
       [](const std::string& p) { test::write_file(p, "just some text\n"); },
       {"not an HDF5 file"}},
      {"empty file", [](const std::string& p) { test::write_file(p, ""); }, {"not an HDF5 file"}},
      {"no train",
       [](const std::string& p) { Builder(p).tokens("val", 20).valid_attrs(); },
       {"missing dataset /train"}},
      {"no val",
       [](const std::string& p) { Builder(p).tokens("train", 20).valid_attrs(); },
       {"missing dataset /val"}},
      {"train is a group",
       [](const std::string& p) { Builder(p).group("train").tokens("val", 20).valid_attrs(); },
       {"/train is a group, not a dataset"}},
      // A flipped byte in a chunk: HDF5's "data pipeline read failed" and the source line it was
      // checked at were all the message said (QA).
      {"a damaged chunk",
       [](const std::string& p) {
         Builder(p).checked_tokens("train", 20).tokens("val", 20).valid_attrs();
         test::xor_byte(p, test::first_chunk(p, "train").first + 3);
       },
       {"/train ids 0..19 cannot be read", "checksum does not match"}},
      {"rank 2",
       [](const std::string& p) {
         Builder(p)
             .dataset("train", H5T_STD_U16LE, H5T_NATIVE_UINT16, std::vector<uint16_t>(20), {4, 5})
             .tokens("val", 20)
             .valid_attrs();
       },
       {"/train has rank 2"}},
      {"float tokens",
       [](const std::string& p) {
         Builder(p)
             .tokens("train", 20)
             .dataset("val", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, std::vector<float>(20, 1.0f))
             .valid_attrs();
       },
       {"/val holds float values"}},
      {"no vocab_size",
       [](const std::string& p) {
         Builder(p).tokens("train", 20).tokens("val", 20).fixed_str_attr("tokenizer", "bytes");
       },
       {"missing root attribute 'vocab_size'"}},
      {"no tokenizer",
       [](const std::string& p) {
         Builder(p).tokens("train", 20).tokens("val", 20).int_attr("vocab_size", 256);
       },
       {"missing root attribute 'tokenizer'"}},
      {"vocab_size is a string",
       [](const std::string& p) {
         Builder(p)
             .tokens("train", 20)
             .tokens("val", 20)
             .fixed_str_attr("vocab_size", "256")
             .fixed_str_attr("tokenizer", "bytes");
       },
       {"'vocab_size' must be an integer"}},
      {"tokenizer is a number",
       [](const std::string& p) {
         Builder(p)
             .tokens("train", 20)
             .tokens("val", 20)
             .int_attr("vocab_size", 256)
             .int_attr("tokenizer", 1);
       },
       {"'tokenizer' must be a string"}},
      // One of SPEC 8's names mistyped: trained on as another tool's ids, every checkpoint of the
      // run without its text (found by QA: `sample` refused them only after training).
      // An empty name: trained on as ids, but `sample` read its checkpoints as bytes (QA).
      {"empty tokenizer",
       [](const std::string& p) {
         Builder(p).tokens("train", 20).tokens("val", 20).named_attrs("");
       },
       {"root attribute tokenizer is empty"}},
      {"tokenizer name in another case",
       [](const std::string& p) {
         Builder(p).tokens("train", 20).tokens("val", 20).named_attrs("SentencePiece");
       },
       {"tokenizer is 'SentencePiece' (did you mean 'sentencepiece'?)", "'imported'"}},
      {"tokenizer name misspelt",
       [](const std::string& p) {
         Builder(p).tokens("train", 20).tokens("val", 20).named_attrs("byte");
       },
       {"tokenizer is 'byte' (did you mean 'bytes'?)"}},
      {"vocab larger than model",
       [](const std::string& p) {
         Builder(p).tokens("train", 20).tokens("val", 20).valid_attrs(300);
       },
       {"vocab_size 300", "model.vocab_size 256"}},
      {"bytes with a larger vocabulary",  // ids no byte is: decoded as garbage (found by QA)
       [](const std::string& p) {
         Builder(p).tokens("train", 20).tokens("val", 20).valid_attrs(300);
       },
       {"tokenizer is 'bytes' (ids 0-255) but vocab_size is 300"},
       512},
      {"token out of range",
       [](const std::string& p) {
         std::vector<uint16_t> t(20, 3);
         t[13] = 256;
         Builder(p)
             .dataset("train", H5T_STD_U16LE, H5T_NATIVE_UINT16, t)
             .tokens("val", 20)
             .valid_attrs();
       },
       {"/train[13] = 256", "[0, 256)"}},
      {"token beyond a smaller file vocab",
       [](const std::string& p) {
         std::vector<uint16_t> t(20, 3);
         t[19] = 100;
         Builder(p)
             .dataset("train", H5T_STD_U16LE, H5T_NATIVE_UINT16, std::vector<uint16_t>(20, 99))
             .dataset("val", H5T_STD_U16LE, H5T_NATIVE_UINT16, t)
             .valid_attrs(100);
       },
       {"/val[19] = 100", "[0, 100)"}},
      {"negative token",
       [](const std::string& p) {
         std::vector<int32_t> t(20, 3);
         t[2] = -4;
         Builder(p)
             .dataset("train", H5T_STD_I32LE, H5T_NATIVE_INT32, t)
             .tokens("val", 20)
             .valid_attrs();
       },
       {"/train[2] = -4"}},
      {"train too short",
       [](const std::string& p) { Builder(p).tokens("train", 8).tokens("val", 20).valid_attrs(); },
       {"/train holds 8 tokens", "model.seq_len + 1 = 9"}},
      {"val too short",
       [](const std::string& p) { Builder(p).tokens("train", 20).tokens("val", 3).valid_attrs(); },
       {"/val holds 3 tokens"}},
      {"truncated file",
       [&dir](const std::string& p) {
         test::write_file(dir.file("src.txt"), std::string(5000, 'a'));
         PrepareOptions o;
         o.inputs = {dir.file("src.txt")};
         o.output = dir.file("whole.h5");
         prepare_token_file(o);
         const std::string whole = test::read_file(o.output);
         test::write_file(p, whole.substr(0, whole.size() / 2));
       },
       {"truncated.h5"}},
  };
  int i = 0;
  for (const auto& c : cases) {
    const std::string name =
        c.label == "truncated file" ? "truncated.h5" : "case" + std::to_string(i++) + ".h5";
    const std::string p = dir.file(name);
    c.make(p);
    expect_usage_error([&] { read_token_file(p, c.model_vocab, c.seq_len); },
                       [&] {
                         auto e = c.expect;
                         e.push_back(name);
                         return e;
                       }(),
                       c.label);
  }
  expect_usage_error([&] { read_token_file(dir.file("absent.h5"), 256, 8); },
                     {"absent.h5", "not found"}, "missing");
  expect_usage_error([&] { read_token_file(dir.path().string(), 256, 8); }, {"is a directory"},
                     "directory");
}

}  // namespace
}  // namespace sy
