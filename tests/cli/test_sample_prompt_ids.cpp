// `switchyard sample --prompt-ids`: a prompt given as token ids, for any tokenizer, and the only
// prompt a run on imported ids (no text) can have. Its continuation is checked against results
// computed another way: the trainer's own evaluation sample of an imported run, and on a byte
// tokenizer the text prompt whose bytes are the ids.
#include <gtest/gtest.h>
#include <hdf5.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "cli/cli_runs.h"
#include "common/run_command.h"
#include "common/temp_dir.h"
#include "src/ckpt/seal.h"
#include "src/core/h5.h"

namespace {

using sy::test::run_command;
using namespace sy::test::cli;  // kBin, kSrc, the texts, their token file, a run, its checkpoint

// The command's stdout alone (the sample; its progress goes to stderr).
sy::test::CommandResult stdout_of(const std::string& cmd) {
  return run_command("(" + cmd + " 2>/dev/null)");
}

void write_uint16(const std::string& path, const std::vector<uint16_t>& ids) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(ids.data()),
          static_cast<std::streamsize>(ids.size() * sizeof(uint16_t)));
}

std::string joined(const std::vector<int>& ids, const std::string& separator) {
  std::string out;
  for (int id : ids) out += (out.empty() ? "" : separator) + std::to_string(id);
  return out;
}

// A run of 3 steps on imported raw-uint16 ids (a vocabulary of 64, no text) with a model of
// `model_vocab` ids, evaluated at step 3 with a 40-token sample (run.seed 77): the checkpoint's
// directory, the sample's 16-id prompt (the validation split's first ids) and its samples.txt line.
struct ImportedRun {
  std::string out;
  std::vector<int> prompt;
  std::string sample;
};
ImportedRun imported_run(const sy::test::TempDir& dir, int model_vocab) {
  std::vector<uint16_t> train_ids, val_ids;
  for (int i = 0; i < 600; ++i) train_ids.push_back(static_cast<uint16_t>((i * 7 + i / 9) % 61));
  for (int i = 0; i < 300; ++i) val_ids.push_back(static_cast<uint16_t>((i * 5 + 2) % 59));
  write_uint16(dir.file("train.bin"), train_ids);
  write_uint16(dir.file("val.bin"), val_ids);
  const std::string data = dir.file("imp.h5");
  const auto r = run_command(kBin + " data import --format raw-uint16 " + dir.file("train.bin") +
                             " " + dir.file("val.bin") + " --output " + data + " --vocab-size 64");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  ImportedRun run{dir.file("run" + std::to_string(model_vocab)),
                  std::vector<int>(val_ids.begin(), val_ids.begin() + 16), ""};
  train(data, run.out, 3,
        "--set model.vocab_size=" + std::to_string(model_vocab) +
            " --set eval.every=3 --set eval.sample_tokens=40 --set eval.sequences=2"
            " --set run.seed=77");
  std::ifstream in(run.out + "/samples.txt", std::ios::binary);
  std::string header;
  std::getline(in, header);
  EXPECT_EQ(header, "sample at step 3 (the first 16 validation tokens, then 40 generated):");
  std::getline(in, run.sample);
  EXPECT_EQ(run.sample.rfind(joined(run.prompt, " ") + " ", 0), 0u) << run.sample;  // its prompt
  return run;
}

// Its evaluation sample at step 3 (the prompt, then 40 ids drawn at temperature 1 with run.seed)
// is what `sample --prompt-ids <the prompt> --temperature 1 --seed <run.seed>` prints from the
// step-3 checkpoint, ids space separated. Before --prompt-ids such a checkpoint could not be
// sampled.
TEST(SampleCli, PromptIdsOfAnImportedRunGiveItsEvaluationSample) {
  sy::test::TempDir dir;
  const ImportedRun run = imported_run(dir, 64);
  ASSERT_FALSE(run.sample.empty());
  const std::vector<int>& prompt = run.prompt;
  const std::string cmd = kBin + " sample --checkpoint " + final_ckpt(run.out, 3) +
                          " --tokens 40 --temperature 1 --seed 77 --prompt-ids ";
  for (const std::string& list : {joined(prompt, " "), joined(prompt, ","), joined(prompt, ", ")}) {
    const auto s = stdout_of(cmd + "'" + list + "'");
    ASSERT_EQ(s.exit_code, 0) << list << "\n" << s.output;
    EXPECT_EQ(s.output, run.sample + "\n") << list;
  }
  // An id the model does not embed (model.vocab_size 64) names the entry.
  auto r = run_command(cmd + "'5 64'");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output,
                       "--prompt-ids: entry 2, '64', is not a token id of this model: "
                       "ids are in [0, 64)"))
      << r.output;
  // Without a prompt, and with a text one, the message points at --prompt-ids.
  const std::string bare = kBin + " sample --checkpoint " + final_ckpt(run.out, 3);
  r = run_command(bare);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "no prompt: the checkpoint's tokenizer 'imported' has no text"))
      << r.output;
  EXPECT_TRUE(contains(r.output, "--prompt-ids IDS")) << r.output;
  r = run_command(bare + " --prompt x");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output, "'imported' has no text")) << r.output;
  EXPECT_TRUE(contains(r.output, "--prompt-ids IDS")) << r.output;
}

// ... also where the model's vocabulary is padded past the data's (96 ids for 64): the evaluation
// sample picks among the data's ids, and so does `sample`, from the checkpoint's root attribute
// tokenizer_vocab_size. It picked among the model's 96 and drew another text at the same seed.
TEST(SampleCli, PromptIdsOfAnImportedRunWithAPaddedVocabularyPickTheDatasIds) {
  sy::test::TempDir dir;
  const ImportedRun run = imported_run(dir, 96);
  ASSERT_FALSE(run.sample.empty());
  const auto s = stdout_of(kBin + " sample --checkpoint " + final_ckpt(run.out, 3) +
                           " --tokens 40 --temperature 1 --seed 77 --prompt-ids '" +
                           joined(run.prompt, " ") + "'");
  ASSERT_EQ(s.exit_code, 0) << s.output;
  EXPECT_EQ(s.output, run.sample + "\n");
  // A checkpoint from before that attribute (deleted here, the file resealed): the data's
  // vocabulary from its /state/data fingerprint ("vocab_size 64, ..."). It picked among 96.
  const std::string older = dir.file("older.h5");
  std::filesystem::copy_file(final_ckpt(run.out, 3), older);
  {
    sy::h5::File f{H5Fopen(older.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)};
    ASSERT_GE(f.get(), 0);
    ASSERT_GE(H5Adelete(f.get(), "tokenizer_vocab_size"), 0);
  }
  sy::ckpt::detail::seal_checkpoint(older);
  const auto o = stdout_of(kBin + " sample --checkpoint " + older +
                           " --tokens 40 --temperature 1 --seed 77 --prompt-ids '" +
                           joined(run.prompt, " ") + "'");
  ASSERT_EQ(o.exit_code, 0) << o.output;
  EXPECT_EQ(o.output, run.sample + "\n");
}

// With a text tokenizer the ids of a text prompt it as the text does: on the byte tokenizer, the
// text's bytes as ids give the text's continuation, printed as text, greedy and sampled.
TEST(SampleCli, PromptIdsOfATextContinueAsTheText) {
  sy::test::TempDir dir;
  const std::string ckpt = two_step_checkpoint(dir);
  const std::string text = "the quick";
  std::vector<int> bytes;
  for (char c : text) bytes.push_back(static_cast<unsigned char>(c));
  const std::string cmd = kBin + " sample --checkpoint " + ckpt + " --tokens 24 ";
  for (const char* how : {"--temperature 0", "--temperature 1 --seed 9"}) {
    const auto by_text = stdout_of(cmd + how + " --prompt '" + text + "'");
    const auto by_ids = stdout_of(cmd + how + " --prompt-ids '" + joined(bytes, ",") + "'");
    ASSERT_EQ(by_text.exit_code, 0) << by_text.output;
    ASSERT_EQ(by_ids.exit_code, 0) << by_ids.output;
    EXPECT_EQ(by_ids.output, by_text.output) << how;
    EXPECT_EQ(by_ids.output.rfind(text, 0), 0u) << by_ids.output;
  }
  // A text tokenizer's checkpoint without a prompt: all three ways to give one.
  const auto r = run_command(kBin + " sample --checkpoint " + ckpt);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output,
                       "no prompt: give --prompt TEXT, --prompt-file FILE or "
                       "--prompt-ids IDS"))
      << r.output;
}

TEST(SampleCli, BadPromptIdsExitTwoNamingTheEntry) {
  sy::test::TempDir dir;
  const std::string ckpt = two_step_checkpoint(dir);  // model.vocab_size 256
  const std::string s = kBin + " sample --checkpoint " + ckpt + " --tokens 4 ";
  auto expect2 = [&](const std::string& args, const std::string& part) {
    const auto r = run_command(s + args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, part)) << args << ": '" << part << "' not in\n" << r.output;
  };
  expect2("--prompt-ids ''", "--prompt-ids is empty");
  expect2("--prompt-ids ' , '", "--prompt-ids: entry 1 is empty");
  expect2("--prompt-ids '1,,2'", "--prompt-ids: entry 2 is empty");
  expect2("--prompt-ids '1 2,'", "--prompt-ids: entry 3 is empty");
  expect2("--prompt-ids '1 x7'", "--prompt-ids: entry 2, 'x7', is not a token id: ids are whole");
  expect2("--prompt-ids '1 -1'", "--prompt-ids: entry 2, '-1', is not a token id");
  expect2("--prompt-ids '1.5'", "--prompt-ids: entry 1, '1.5', is not a token id");
  expect2("--prompt-ids '3 256'",
          "--prompt-ids: entry 2, '256', is not a token id of this model: ids are in [0, 256)");
  // An entry of 300 digits (past int64) is shortened in the message.
  expect2("--prompt-ids '7 " + std::string(300, '9') + "'", "--prompt-ids: entry 2, '" +
                                                                std::string(60, '9') +
                                                                "... (300 characters)', is not a "
                                                                "token id of this model");
  expect2("--prompt-ids 1 --prompt x", "--prompt excludes --prompt-ids");
  // A model padded past its tokenizer (300 ids for the byte tokenizer's 256): an id past the
  // tokenizer's was taken and printed as nothing (review).
  write_texts(dir);
  train(prepare(dir), dir.file("padded"), 1, "--set model.vocab_size=300");
  const auto r = run_command(kBin + " sample --checkpoint " + final_ckpt(dir.file("padded"), 1) +
                             " --tokens 4 --prompt-ids '3 290'");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_TRUE(contains(r.output,
                       "--prompt-ids: entry 2, '290', is not a token id of this model: "
                       "ids are in [0, 256) (the ids of its tokenizer; model.vocab_size "
                       "300 pads past them)"))
      << r.output;
  expect2("--prompt-ids 1 --prompt-file " + dir.file("a.txt"),
          "--prompt-file excludes --prompt-ids");
}

}  // namespace
