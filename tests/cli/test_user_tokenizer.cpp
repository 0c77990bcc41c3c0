// `data prepare --tokenizer-model`: a user's own SentencePiece model (trained here by Debian's
// spm_train, as a user would) makes an ordinary "sentencepiece" token file. Checked against
// independent results: spm_encode's ids line by line, spm_decode's text of the stored ids, the
// model file's bytes, and what `train` and `sample` make of the file; a model that cannot give
// the text back exactly (NFKC, no byte fallback) and wrong option combinations are exit 2 naming
// the file, the byte offset and the option, with nothing written.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "common/file_text.h"
#include "common/run_command.h"
#include "common/temp_dir.h"
#include "src/data/tokens.h"

namespace {

namespace fs = std::filesystem;
using sy::test::read_file;
using sy::test::run_command;
const std::string kBin = SWITCHYARD_BIN;
const std::string kSrc = SWITCHYARD_SOURCE_DIR;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// Lines of English-like words, some indented, with an "é" now and then.
std::string corpus(int lines, int salt) {
  const char* words[] = {"the",   "licence", "software", "copy",       "distribute", "modify",
                         "terms", "program", "source",   "conditions", "warranty",   "free"};
  std::ostringstream os;
  for (int i = 0; i < lines; ++i) {
    if (i % 7 == 0) os << "  ";
    for (int w = 0; w < 9; ++w) os << words[(i * 5 + w * 3 + salt) % 12] << (w == 8 ? "" : " ");
    os << (i % 11 == 0 ? " caf\xc3\xa9." : ".") << "\n";
  }
  return os.str();
}

bool have_spm_tools() {
  return fs::exists("/usr/bin/spm_train") && fs::exists("/usr/bin/spm_encode") &&
         fs::exists("/usr/bin/spm_decode");
}

// spm_train on dir/train.txt into dir/<name>.model (and .vocab) with `flags`.
void spm_train(const sy::test::TempDir& dir, const std::string& name, const std::string& flags) {
  const auto r = run_command("/usr/bin/spm_train --input=" + dir.file("train.txt") +
                             " --model_prefix=" + dir.file(name) + " --minloglevel=2 " + flags);
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

// Each split's text: the first 90 % of each input (the cut moved out of a UTF-8 character) for
// /train, the rest for /val, as `data prepare --val-fraction 0.1` cuts.
struct Splits {
  std::vector<std::string> train, val;
};
Splits split(const std::vector<std::string>& texts) {
  Splits s;
  for (const auto& t : texts) {
    size_t c = t.size() - static_cast<size_t>(static_cast<double>(t.size()) * 0.1);
    while (c < t.size() && (static_cast<unsigned char>(t[c]) & 0xC0) == 0x80) ++c;
    s.train.push_back(t.substr(0, c));
    s.val.push_back(t.substr(c));
  }
  return s;
}

// The id of `piece` in spm_train's <name>.vocab (one "piece<TAB>score" line per id).
int vocab_id(const std::string& vocab_file, const std::string& piece) {
  std::ifstream in(vocab_file);
  int id = 0;
  for (std::string line; std::getline(in, line); ++id)
    if (line.substr(0, line.find('\t')) == piece) return id;
  return -1;
}

// The ids spm_encode gives `parts`, each part encoded alone and line by line (spm_encode encodes
// each line alone), the lines joined by the newline's byte piece <0x0A>.
std::vector<int32_t> spm_encode_parts(const sy::test::TempDir& dir, const std::string& model,
                                      const std::vector<std::string>& parts, int newline_id) {
  std::vector<std::vector<std::string>> lines(parts.size());
  std::string all;
  for (size_t p = 0; p < parts.size(); ++p) {
    std::istringstream in(parts[p]);
    for (std::string line; std::getline(in, line);) {
      lines[p].push_back(line);
      all += line + "\n";
    }
  }
  write_file(dir.file("enc_in.txt"), all);
  const auto r = run_command("/usr/bin/spm_encode --model=" + model + " --output_format=id < " +
                             dir.file("enc_in.txt") + " 2>/dev/null");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::istringstream out(r.output);
  std::vector<int32_t> ids;
  for (size_t p = 0; p < parts.size(); ++p) {
    for (size_t l = 0; l < lines[p].size(); ++l) {
      std::string got;
      EXPECT_TRUE(std::getline(out, got)) << r.output;
      std::istringstream words(got);
      for (int32_t id; words >> id;) ids.push_back(id);
      const bool ends_line = l + 1 < lines[p].size() || parts[p].ends_with('\n');
      if (ends_line) ids.push_back(newline_id);
    }
  }
  return ids;
}

// spm_decode's text of `ids` (one line of ids; it writes the text and a newline).
std::string spm_decode(const sy::test::TempDir& dir, const std::string& model,
                       const std::vector<int32_t>& ids) {
  std::ostringstream line;
  for (int32_t id : ids) line << (line.tellp() > 0 ? " " : "") << id;
  write_file(dir.file("dec_in.txt"), line.str() + "\n");
  const auto r = run_command("/usr/bin/spm_decode --model=" + model + " --input_format=id < " +
                             dir.file("dec_in.txt") + " 2>/dev/null");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return r.output.ends_with('\n') ? r.output.substr(0, r.output.size() - 1) : r.output;
}

std::string concat(const std::vector<std::string>& parts) {
  std::string s;
  for (const auto& p : parts) s += p;
  return s;
}

// Two inputs with characters the model never saw ("€", "中": byte fallback spells them).
struct Inputs {
  std::vector<std::string> texts;
  std::string paths;
  explicit Inputs(const sy::test::TempDir& dir) {
    write_file(dir.file("train.txt"), corpus(300, 0));
    texts = {corpus(120, 3) + "costs 5 \xe2\x82\xac\n", "\xe4\xb8\xad " + corpus(80, 7)};
    write_file(dir.file("a.txt"), texts[0]);
    write_file(dir.file("b.txt"), texts[1]);
    paths = dir.file("a.txt") + " " + dir.file("b.txt");
  }
};

// spm_train <name>.model (BPE of 300 pieces, identity, byte fallback, whitespace kept, plus
// `flags`) on dir/train.txt, and `data prepare --tokenizer-model` with it into <name>.h5; the
// command's output.
std::string train_and_prepare(const sy::test::TempDir& dir, const Inputs& in,
                              const std::string& name, const std::string& flags) {
  spm_train(dir, name,
            "--model_type=bpe --vocab_size=300 --normalization_rule_name=identity "
            "--byte_fallback=true --remove_extra_whitespaces=false " +
                flags);
  const auto r =
      run_command(kBin + " data prepare --input " + in.paths + " --output " +
                  dir.file(name + ".h5") + " --tokenizer-model " + dir.file(name + ".model"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return r.output;
}

// An identity, byte-fallback model without the dummy "▁" prefix: the file's ids are spm_encode's
// line by line, the file carries the model's bytes, and the vocabulary is the model's.
TEST(UserTokenizer, PrepareEncodesAsSpmEncodeAndCarriesTheModelFile) {
  if (!have_spm_tools()) GTEST_SKIP() << "spm_train/spm_encode/spm_decode not installed";
  const sy::test::TempDir dir;
  const Inputs in(dir);
  const std::string said = train_and_prepare(dir, in, "plain", "--add_dummy_prefix=false");
  const std::string model = dir.file("plain.model");
  const std::string out = dir.file("plain.h5");
  EXPECT_TRUE(contains(said, "wrote " + out + ": tokenizer sentencepiece, vocab_size 300")) << said;
  EXPECT_TRUE(contains(said, "(300 pieces, byte fallback)")) << said;

  const sy::TokenData d = sy::read_token_file(out, 300, 8);
  EXPECT_EQ(d.tokenizer, "sentencepiece");
  EXPECT_EQ(d.vocab_size, 300);
  EXPECT_EQ(d.tokenizer_model, read_file(model));
  const int newline = vocab_id(dir.file("plain.vocab"), "<0x0A>");
  ASSERT_GE(newline, 0);
  const Splits s = split(in.texts);
  EXPECT_EQ(d.train, spm_encode_parts(dir, model, s.train, newline));
  EXPECT_EQ(d.val, spm_encode_parts(dir, model, s.val, newline));
}

// A Llama-style model (identity, byte fallback, spm_train's dummy "▁" prefix): each split's ids,
// its parts and lines encoded one after the other, decode (spm_decode) to exactly its text --
// a "▁" only in front of the split, not of each input -- and the file trains and samples.
TEST(UserTokenizer, DummyPrefixModelDecodesToTheTextAndTrainsAndSamples) {
  if (!have_spm_tools()) GTEST_SKIP() << "spm_train/spm_encode/spm_decode not installed";
  const sy::test::TempDir dir;
  const Inputs in(dir);
  train_and_prepare(dir, in, "llama", "");
  const std::string model = dir.file("llama.model");
  const std::string out = dir.file("llama.h5");
  const sy::TokenData d = sy::read_token_file(out, 300, 8);
  const Splits s = split(in.texts);
  EXPECT_EQ(spm_decode(dir, model, d.train), concat(s.train));
  EXPECT_EQ(spm_decode(dir, model, d.val), concat(s.val));

  const std::string run = dir.file("run");
  auto r = run_command(kBin + " train --config " + kSrc +
                       "/configs/tiny.yaml --set data.path=" + out + " --set run.out_dir=" + run +
                       " --set train.steps=2 --set checkpoint.every=2 --set log.every=100"
                       " --set model.vocab_size=300");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string ckpt = run + "/checkpoints/step_00000002.h5";
  r = run_command("(" + kBin + " sample --checkpoint " + ckpt +
                  " --prompt 'the free software' --tokens 8 --seed 3 2>/dev/null)");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.rfind("the free software", 0), 0u) << r.output;
  // Hugging Face's tokenizer puts the "▁" in front as this model does (trained with it).
  const std::string hf = dir.file("hf");
  r = run_command(kBin + " ckpt export " + ckpt + " --format hf --output " + hf);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(read_file(hf + "/tokenizer.model"), read_file(model));
  EXPECT_TRUE(contains(read_file(hf + "/tokenizer_config.json"), "\"add_prefix_space\": true"))
      << read_file(hf + "/tokenizer_config.json");
}

// The Hugging Face export names the model's own special pieces: spm_train's defaults (<unk> 0,
// <s> 1, </s> 2), or none where the model has none (--bos_id=-1 --eos_id=-1). The export named
// bos 1 and eos 2 for any model -- here byte pieces, so generate() stopped at byte 0x01 -- and
// "<s>"/"</s>" as tokens, which transformers then added past vocab_size (a text holding "</s>"
// crashed the model's embedding).
TEST(UserTokenizer, TheHfExportNamesTheModelsOwnSpecialPieces) {
  if (!have_spm_tools()) GTEST_SKIP() << "spm_train/spm_encode/spm_decode not installed";
  const sy::test::TempDir dir;
  const Inputs in(dir);
  for (const auto& [name, flags, bos, eos, control] :
       {std::tuple{std::string("defaults"), std::string(""), nlohmann::json(1), nlohmann::json(2),
                   std::string("[0, 1, 2]")},
        std::tuple{std::string("none"), std::string("--bos_id=-1 --eos_id=-1"),
                   nlohmann::json(nullptr), nlohmann::json(nullptr), std::string("[0]")}}) {
    SCOPED_TRACE(name);
    train_and_prepare(dir, in, name, flags);
    const std::string run = dir.file(name + "-run");
    auto r = run_command(kBin + " train --config " + kSrc + "/configs/tiny.yaml --set data.path=" +
                         dir.file(name + ".h5") + " --set run.out_dir=" + run +
                         " --set train.steps=2 --set checkpoint.every=2 --set log.every=100"
                         " --set model.vocab_size=304");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const std::string hf = dir.file(name + "-hf");
    r = run_command(kBin + " ckpt export " + run + "/checkpoints/step_00000002.h5 --format hf" +
                    " --output " + hf);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    // A padded vocabulary: the note's suppress_tokens holds the model's control pieces too (sample
    // picks neither).
    EXPECT_TRUE(contains(r.output, "suppress_tokens=" + control + " + list(range(300, 304))"))
        << r.output;
    // Unpadded, the note names the control pieces alone.
    const std::string run300 = dir.file(name + "-run300"), hf300 = dir.file(name + "-hf300");
    r = run_command(kBin + " train --config " + kSrc + "/configs/tiny.yaml --set data.path=" +
                    dir.file(name + ".h5") + " --set run.out_dir=" + run300 +
                    " --set train.steps=2 --set checkpoint.every=2 --set log.every=100"
                    " --set model.vocab_size=300");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = run_command(kBin + " ckpt export " + run300 + "/checkpoints/step_00000002.h5 --format hf" +
                    " --output " + hf300);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "control pieces, ids " + control)) << r.output;
    EXPECT_TRUE(contains(r.output, "suppress_tokens=" + control + " to sample")) << r.output;
    const auto config = nlohmann::json::parse(read_file(hf + "/config.json"));
    EXPECT_EQ(config["bos_token_id"], bos);
    EXPECT_EQ(config["eos_token_id"], eos);
    const auto t = nlohmann::json::parse(read_file(hf + "/tokenizer_config.json"));
    EXPECT_EQ(t.value("unk_token", ""), "<unk>") << t.dump();
    EXPECT_EQ(t.value("bos_token", ""), bos.is_null() ? "" : "<s>") << t.dump();
    EXPECT_EQ(t.value("eos_token", ""), eos.is_null() ? "" : "</s>") << t.dump();
    // Any length reads (RoPE, the sliding window): no limit for transformers to warn of.
    EXPECT_FALSE(t.contains("model_max_length")) << t.dump();
  }
}

// spm_train's defaults (nmt_nfkc normalization, no byte fallback): a text NFKC rewrites, or with
// a character the model has no piece for, is refused naming the file, the byte offset in it (in
// the val part here) and the fix; nothing is written.
TEST(UserTokenizer, AModelThatCannotGiveTheTextBackIsRefusedWithWhereAndWhy) {
  if (!have_spm_tools()) GTEST_SKIP() << "spm_train/spm_encode/spm_decode not installed";
  const sy::test::TempDir dir;
  std::string letters;
  for (int i = 0; i < 38; ++i) letters += "abcdefghij";
  write_file(dir.file("train.txt"), letters + "\nab cd ef gh\n");
  spm_train(dir, "nfkc", "--model_type=bpe --vocab_size=40");
  // One line each, no newline (nmt_nfkc turns newlines into spaces); the cut at 90 % falls
  // inside the letters, the character past it at byte 386.
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {letters + "ab cd \xef\xbc\xa1"
                 "ef gh",
       {"'\xef\xbc\xa1' (U+FF21)", "normalization"}},
      {letters + "ab cd \xef\xac\x81"
                 "ef gh",
       {"'\xef\xac\x81' (U+FB01)", "normalization"}},
      {letters + "ab cd \xe2\x82\xac"
                 "ef gh",
       {"'\xe2\x82\xac' (U+20AC)", "no byte fallback"}},
  };
  for (const auto& [text, why] : cases) {
    write_file(dir.file("in.txt"), text);
    const std::string out = dir.file("out.h5");
    const auto r = run_command(kBin + " data prepare --input " + dir.file("in.txt") + " --output " +
                               out + " --tokenizer-model " + dir.file("nfkc.model"));
    EXPECT_EQ(r.exit_code, 2) << r.output;
    std::vector<std::string> want = why;
    want.insert(want.end(), {"input file '" + dir.file("in.txt") + "'",
                             "cannot encode the text exactly at byte offset 386",
                             "--normalization_rule_name=identity", "--byte_fallback=true",
                             "--tokenizer bpe|unigram"});
    for (const auto& part : want) EXPECT_TRUE(contains(r.output, part)) << part << "\n" << r.output;
    EXPECT_FALSE(fs::exists(out));
    EXPECT_FALSE(fs::exists(out + ".tmp"));
  }
}

// --tokenizer-model with an option of a tokenizer that is trained, and a file that is missing or
// not a SentencePiece model: exit 2 naming the option or the file, nothing written.
TEST(UserTokenizer, OptionsAndFilesThatCannotWorkAreRefused) {
  const sy::test::TempDir dir;
  write_file(dir.file("a.txt"), corpus(50, 0));
  write_file(dir.file("not.model"), corpus(5, 1));
  const std::string base = kBin + " data prepare --input " + dir.file("a.txt") + " --output " +
                           dir.file("out.h5") + " --tokenizer-model ";
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {dir.file("not.model"),
       {"--tokenizer-model '" + dir.file("not.model") + "'", "does not load",
        "its bytes are not a SentencePiece ModelProto",
        "expected a serialized SentencePiece model"}},
      {dir.file("none.model"), {"--tokenizer-model '" + dir.file("none.model") + "' not found"}},
      {dir.file("not.model") + " --tokenizer bytes", {"--tokenizer bytes with --tokenizer-model"}},
      {dir.file("not.model") + " --tokenizer bpe", {"--tokenizer bpe with --tokenizer-model"}},
      {dir.file("not.model") + " --vocab-size 300", {"--vocab-size with --tokenizer-model"}},
      {dir.file("not.model") + " --train-sentences 1000000",
       {"--train-sentences with --tokenizer-model"}},
  };
  for (const auto& [args, want] : cases) {
    const auto r = run_command(base + args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
    for (const auto& part : want) EXPECT_TRUE(contains(r.output, part)) << part << "\n" << r.output;
    // Not where in its own source SentencePiece failed (".cc(232) [model_proto->...]").
    EXPECT_FALSE(contains(r.output, ".cc(")) << r.output;
    EXPECT_FALSE(fs::exists(dir.file("out.h5"))) << args;
  }
}

}  // namespace
