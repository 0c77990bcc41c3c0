// `data prepare --tokenizer-model` encodes a long text in blocks split after newlines: with a
// model that puts a dummy "▁" in front of a text (spm_train's default, Llama's), each block after
// the first must be encoded as it reads after its newline. Checked against SentencePiece's own
// encoding of the whole text in one call.
#include <gtest/gtest.h>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/temp_dir.h"
#include "src/data/tokens.h"

namespace sy {
namespace {

TEST(UserTokenizer, BlocksOfALongTextEncodeAsTheWholeText) {
  test::TempDir dir;
  std::ostringstream os;
  const char* words[] = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"};
  for (int i = 0; i < 200; ++i) {
    if (i % 5 == 0) os << " ";  // a line that starts with a space: "▁" in context, not a prefix
    for (int w = 0; w < 6; ++w) os << words[(i * 3 + w * 5) % 8] << (w == 5 ? "" : " ");
    os << "\n";
  }
  const std::string text = os.str();
  std::ofstream(dir.file("a.txt"), std::ios::binary) << text;
  std::string model;
  ASSERT_TRUE(sentencepiece::SentencePieceTrainer::Train({{"input", dir.file("a.txt")},
                                                          {"model_type", "bpe"},
                                                          {"vocab_size", "300"},
                                                          {"byte_fallback", "true"},
                                                          {"normalization_rule_name", "identity"},
                                                          {"remove_extra_whitespaces", "false"},
                                                          {"minloglevel", "2"}},
                                                         nullptr, &model)
                  .ok());
  std::ofstream(dir.file("m.model"), std::ios::binary) << model;

  PrepareOptions opt;
  opt.inputs = {dir.file("a.txt")};
  opt.output = dir.file("t.h5");
  opt.tokenizer_model = dir.file("m.model");
  opt.encode_block_bytes = 100;  // dozens of blocks
  prepare_token_file(opt);
  const TokenData d = read_token_file(opt.output, 300, 8);

  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.LoadFromSerializedProto(model).ok());
  const size_t cut = text.size() - static_cast<size_t>(static_cast<double>(text.size()) * 0.1);
  std::vector<int> train, val;
  ASSERT_TRUE(sp.Encode(text.substr(0, cut), &train).ok());
  ASSERT_TRUE(sp.Encode(text.substr(cut), &val).ok());
  EXPECT_EQ(d.train, std::vector<int32_t>(train.begin(), train.end()));
  EXPECT_EQ(d.val, std::vector<int32_t>(val.begin(), val.end()));
}

}  // namespace
}  // namespace sy
