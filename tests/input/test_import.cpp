// `data import` of token shards (llm.c's, Llama 3's, raw uint16): each checked against shards
// and ids written here byte by byte; every bad shard must be a UsageError naming the shard and
// the byte offset.
#include <gtest/gtest.h>

#include <hdf5.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/expect_error.h"
#include "common/file_size_limit.h"
#include "common/file_text.h"
#include "common/temp_dir.h"
#include "src/core/error.h"
#include "src/core/h5.h"
#include "src/data/import.h"
#include "src/data/tokens.h"

namespace sy {
namespace {

namespace fs = std::filesystem;

using test::expect_usage_error;
using test::FileSizeLimit;
using test::write_file;

std::string le32(int32_t v) {
  std::string s(4, '\0');
  std::memcpy(s.data(), &v, 4);
  return s;
}

// An llm.c shard: the 256-int32 header (magic, version, count), then the tokens.
std::string llmc_shard(const std::vector<uint32_t>& ids, int32_t magic = 20240520,
                       int32_t version = 1, int width = 2) {
  std::string s = le32(magic) + le32(version) + le32(static_cast<int32_t>(ids.size()));
  s.resize(1024, '\0');
  for (uint32_t id : ids) {
    if (width == 2) {
      const auto v = static_cast<uint16_t>(id);
      s.append(reinterpret_cast<const char*>(&v), 2);
    } else {
      s.append(reinterpret_cast<const char*>(&id), 4);
    }
  }
  return s;
}

std::vector<uint32_t> ramp(int n, int mul, int mod) {
  std::vector<uint32_t> v;
  for (int i = 0; i < n; ++i) v.push_back(static_cast<uint32_t>((i * mul) % mod));
  return v;
}

std::vector<int32_t> as_i32(const std::vector<uint32_t>& v) {
  return {v.begin(), v.end()};
}

TEST(Import, LlmcShardsByNameIntoTrainAndVal) {
  test::TempDir dir;
  const auto t0 = ramp(100, 7, 50257), t1 = ramp(60, 13, 50257), v = ramp(40, 3, 50257);
  write_file(dir.file("fw_train_000001.bin"), llmc_shard(t0));
  write_file(dir.file("fw_train_000002.bin"), llmc_shard(t1));
  write_file(dir.file("fw_val_000000.bin"), llmc_shard(v));
  ImportOptions opt;
  opt.shards = {dir.file("fw_val_000000.bin"), dir.file("fw_train_000001.bin"),
                dir.file("fw_train_000002.bin")};
  opt.output = dir.file("tok.h5");
  opt.vocab_size = 50257;
  const ImportReport r = import_token_shards(opt);
  EXPECT_EQ(r.train_tokens, 160);
  EXPECT_EQ(r.val_tokens, 40);
  ASSERT_EQ(r.val_shards.size(), 1u);
  const TokenData d = read_token_file(opt.output, 50257, 8);
  std::vector<int32_t> want = as_i32(t0);
  for (uint32_t x : t1) want.push_back(static_cast<int32_t>(x));
  EXPECT_EQ(d.train, want);
  EXPECT_EQ(d.val, as_i32(v));
  EXPECT_EQ(d.tokenizer, "imported");
  EXPECT_EQ(d.vocab_size, 50257);
}

TEST(Import, Llama3ShardsAndRawUint16WithTheFractionRule) {
  test::TempDir dir;
  const auto big = ramp(50, 40009, 128256);  // ids past 65535: uint32 tokens
  write_file(dir.file("l3.bin"), llmc_shard(big, 20240801, 7, 4));
  ImportOptions opt;
  opt.shards = {dir.file("l3.bin")};
  opt.output = dir.file("l3.h5");
  opt.val_fraction = 0.2;
  const ImportReport r = import_token_shards(opt);
  EXPECT_EQ(r.vocab_size, *std::max_element(big.begin(), big.end()) + 1);  // largest id + 1
  const TokenData d = read_token_file(opt.output, 1 << 20, 8);
  EXPECT_EQ(d.train, as_i32(std::vector<uint32_t>(big.begin(), big.begin() + 40)));
  EXPECT_EQ(d.val, as_i32(std::vector<uint32_t>(big.begin() + 40, big.end())));

  // nanoGPT: train.bin and val.bin, bare uint16.
  const auto tr = ramp(30, 5, 1000), va = ramp(20, 9, 1000);
  std::string raw_tr, raw_va;
  for (uint32_t x : tr) raw_tr.append(reinterpret_cast<const char*>(&x), 2);
  for (uint32_t x : va) raw_va.append(reinterpret_cast<const char*>(&x), 2);
  write_file(dir.file("train.bin"), raw_tr);
  write_file(dir.file("val.bin"), raw_va);
  opt.format = ShardFormat::kRawUint16;
  opt.shards = {dir.file("train.bin"), dir.file("val.bin")};
  opt.output = dir.file("ng.h5");
  opt.vocab_size = 1000;
  import_token_shards(opt);
  const TokenData n = read_token_file(opt.output, 1000, 8);
  EXPECT_EQ(n.train, as_i32(tr));
  EXPECT_EQ(n.val, as_i32(va));

  // Progress inside the passes, with an ETA (one 3 GB shard was 9 s of silence, then 'checked
  // 1/1'): at every block of 2^20 tokens when asked every 0 s; 3 * 2^20 + 5 and 20 tokens, read
  // in 2 passes.
  std::string big_raw(static_cast<size_t>((3 << 20) + 5) * 2, '\0');
  write_file(dir.file("big_train.bin"), big_raw);
  opt.shards = {dir.file("big_train.bin"), dir.file("val.bin")};
  opt.output = dir.file("big.h5");
  opt.progress_every_s = 0;
  std::string said;
  opt.on_progress = [&](const std::string& line) { said += line + "\n"; };
  import_token_shards(opt);
  EXPECT_NE(said.find("importing: 17% (1048576/6291506 tokens), ETA "), std::string::npos) << said;
  EXPECT_NE(said.find("ETA "), std::string::npos) << said;
}

TEST(Import, BadShardsNameTheShardAndTheOffset) {
  test::TempDir dir;
  ImportOptions opt;
  opt.output = dir.file("out.h5");
  opt.vocab_size = 50257;
  auto check = [&](const std::string& name, const std::string& bytes, ShardFormat fmt,
                   const std::vector<std::string>& parts) {
    write_file(dir.file(name), bytes);
    opt.format = fmt;
    opt.shards = {dir.file(name)};
    std::vector<std::string> want = parts;
    want.push_back(dir.file(name));
    expect_usage_error([&] { import_token_shards(opt); }, want, name);
    EXPECT_FALSE(fs::exists(opt.output)) << name;
    EXPECT_FALSE(fs::exists(opt.output + ".tmp")) << name;
  };
  const auto ids = ramp(100, 7, 50000);
  check("magic.bin", llmc_shard(ids, 12345), ShardFormat::kLlmc,
        {"offset 0", "magic 12345", "20240520"});
  check("version.bin", llmc_shard(ids, 20240520, 3), ShardFormat::kLlmc, {"offset 4", "version 3"});
  check("short.bin", llmc_shard(ids).substr(0, 1024 + 150), ShardFormat::kLlmc,
        {"truncated", "100 tokens", "offset 1174", "token 75"});
  check("header.bin", llmc_shard(ids).substr(0, 600), ShardFormat::kLlmc,
        {"truncated", "offset 600", "header"});
  check("extra.bin", llmc_shard(ids) + "xx", ShardFormat::kLlmc, {"offset 1224", "2 bytes after"});
  check("extra1.bin", llmc_shard(ids) + "x", ShardFormat::kLlmc, {"offset 1224: 1 byte after"});
  std::vector<uint32_t> bad = ids;
  bad[42] = 50300;
  check("vocab.bin", llmc_shard(bad), ShardFormat::kLlmc,
        {"offset 1108", "token 42", "id 50300", "--vocab-size 50257"});
  check("odd.bin", std::string(201, 'a'), ShardFormat::kRawUint16, {"truncated", "offset 200"});
  check("empty.bin", "", ShardFormat::kRawUint16, {"empty"});
  // An llm.c shard as bare uint16 tokens: its header became 512 ids, its magic the vocabulary
  // (QA). GPT-2's and LLaMA-3's are named.
  check("gpt2_as_raw.bin", llmc_shard(ids), ShardFormat::kRawUint16,
        {"offset 0", "magic 20240520, version 1", "--format llmc"});
  check("llama3_as_raw.bin", llmc_shard(ids, 20240801, 7, 4), ShardFormat::kRawUint16,
        {"magic 20240801, version 7", "--format llmc"});
  opt.shards = {dir.file("nope.bin")};
  expect_usage_error([&] { import_token_shards(opt); }, {"nope.bin", "not found"}, "missing");
}

// --vocab-size V admits the ids 0 .. V-1: V-1 is imported, V itself is refused. And the fraction
// rule rounds down, as `data prepare` does: 0.25 of 50 tokens holds out the last 12, not 13.
TEST(Import, VocabSizeBoundAndTheFractionRoundsDown) {
  test::TempDir dir;
  std::vector<uint32_t> ids = ramp(50, 3, 100);
  ids[7] = 99;
  write_file(dir.file("top.bin"), llmc_shard(ids));
  ImportOptions opt;
  opt.shards = {dir.file("top.bin")};
  opt.output = dir.file("top.h5");
  opt.vocab_size = 100;
  opt.val_fraction = 0.25;
  const ImportReport r = import_token_shards(opt);
  EXPECT_EQ(r.vocab_size, 100);
  EXPECT_EQ(r.train_tokens, 38);
  EXPECT_EQ(r.val_tokens, 12);
  const TokenData d = read_token_file(opt.output, 100, 8);
  EXPECT_EQ(d.train, as_i32(std::vector<uint32_t>(ids.begin(), ids.begin() + 38)));
  EXPECT_EQ(d.val, as_i32(std::vector<uint32_t>(ids.begin() + 38, ids.end())));

  ids[7] = 100;
  write_file(dir.file("over.bin"), llmc_shard(ids));
  opt.shards = {dir.file("over.bin")};
  opt.output = dir.file("over.h5");
  expect_usage_error([&] { import_token_shards(opt); },
                     {"over.bin", "token 7", "id 100", "--vocab-size 100"}, "id == vocab size");
}

// SPEC section 8: ids are uint16 when vocab_size <= 65536, else uint32 -- at the boundary, as any
// HDF5 reader sees the datasets' type; the largest id round-trips either way.
TEST(Import, TokenTypeIsUint16UpToAVocabularyOf65536) {
  test::TempDir dir;
  for (const int64_t vocab : {int64_t{65536}, int64_t{65537}}) {
    std::vector<uint32_t> ids = ramp(40, 1, 20);
    ids[3] = static_cast<uint32_t>(vocab - 1);
    const std::string name =
        std::string("v").append(std::to_string(vocab));  // GCC 12: not "v" + (-Wrestrict)
    write_file(dir.file(name + ".bin"), llmc_shard(ids, 20240801, 7, 4));
    ImportOptions opt;
    opt.shards = {dir.file(name + ".bin")};
    opt.output = dir.file(name + ".h5");
    opt.vocab_size = vocab;
    opt.val_fraction = 0.25;
    import_token_shards(opt);
    {
      h5::File f{H5_CHECK(H5Fopen(opt.output.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT))};
      for (const char* split : {"train", "val"}) {
        h5::Dataset ds{H5_CHECK(H5Dopen2(f, split, H5P_DEFAULT))};
        h5::Datatype type{H5_CHECK(H5Dget_type(ds))};
        EXPECT_EQ(H5Tget_class(type), H5T_INTEGER) << name << " " << split;
        EXPECT_EQ(H5Tget_sign(type), H5T_SGN_NONE) << name << " " << split;
        EXPECT_EQ(H5Tget_size(type), vocab <= 65536 ? 2u : 4u) << name << " " << split;
      }
    }
    const TokenData d = read_token_file(opt.output, vocab, 8);
    EXPECT_EQ(d.train[3], vocab - 1) << name;
  }
}

// The output is checked before any shard is read (reading them can take minutes).
TEST(Import, AnUnwritableOutputIsRefusedBeforeTheShardsAreRead) {
  test::TempDir dir;
  write_file(dir.file("train.bin"), llmc_shard(ramp(100, 7, 50)));
  ImportOptions opt;
  opt.format = ShardFormat::kLlmc;
  opt.shards = {dir.file("train.bin")};
  opt.output = dir.file("no-such-dir/out.h5");
  int progress_lines = 0;
  opt.on_progress = [&](const std::string&) { ++progress_lines; };
  expect_usage_error([&] { import_token_shards(opt); }, {"no-such-dir", "does not exist"},
                     "missing output directory");
  EXPECT_EQ(progress_lines, 0);
}

// The shards whose names say val: "val" as a word of the name (llm.c's fw_val_000000.bin,
// nanoGPT's val.bin), not inside another word.
TEST(Import, ValShardsAreThoseWithValAsAWordOfTheName) {
  // In any case, and the word "validation" too (VAL.bin and validation.bin were train shards).
  for (const char* yes : {"val.bin", "fw_val_000000.bin", "x-val.bin", "/d/val_1.bin", "a.val",
                          "VAL.bin", "Fw_Val_0.bin", "validation.bin", "tok_validation_000.bin"})
    EXPECT_TRUE(shard_named_val(yes)) << yes;
  for (const char* no : {"interval_train.bin", "train.bin", "valley.bin", "eval.bin", "/val/t.bin",
                         "VALLEY.bin", "invalidation.bin"})
    EXPECT_FALSE(shard_named_val(no)) << no;
}

// A shard named as the output, and an import whose shards are all val shards (an empty /train),
// are refused before anything is written.
TEST(Import, OutputAsAShardAndNoTrainShardAreRefused) {
  test::TempDir dir;
  write_file(dir.file("fw_val_0.bin"), llmc_shard(ramp(100, 7, 50)));
  ImportOptions opt;
  opt.shards = {dir.file("fw_val_0.bin")};
  opt.output = dir.file("fw_val_0.bin");
  expect_usage_error([&] { import_token_shards(opt); }, {"fw_val_0.bin", "overwrite"},
                     "output is a shard");
  opt.output = dir.file("out.h5");
  expect_usage_error([&] { import_token_shards(opt); }, {"/train"}, "only val shards");
  EXPECT_FALSE(fs::exists(opt.output));
}

// A token file that cannot fit the file size limit is refused in words before anything is
// written (a failed HDF5 write cannot be given up cleanly), and nothing is left behind.
TEST(Import, AFilePastTheSizeLimitIsRefusedBeforeWriting) {
  test::TempDir dir;
  const auto ids = ramp(300000, 7, 1000);  // 600 KB as uint16
  std::string raw;
  for (uint32_t x : ids) raw.append(reinterpret_cast<const char*>(&x), 2);
  write_file(dir.file("train.bin"), raw);
  write_file(dir.file("val.bin"), raw.substr(0, 20000));
  ImportOptions opt;
  opt.format = ShardFormat::kRawUint16;
  opt.shards = {dir.file("train.bin"), dir.file("val.bin")};
  opt.output = dir.file("out.h5");
  {
    const FileSizeLimit limit(256 << 10);
    try {
      import_token_shards(opt);
      ADD_FAILURE() << "a 600 KB token file written under a 256 KiB limit";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), kExitOther) << e.what();
      EXPECT_NE(std::string(e.what()).find("'" + opt.output + "'"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("file size limit (ulimit -f)"), std::string::npos)
          << e.what();
    }
  }
  EXPECT_FALSE(fs::exists(opt.output));
  EXPECT_FALSE(fs::exists(opt.output + ".tmp"));
  EXPECT_EQ(import_token_shards(opt).train_tokens, 300000);  // the limit lifted: it fits
}

}  // namespace
}  // namespace sy
