// The tokenizers a token file or a checkpoint names (SPEC section 8, root attribute `tokenizer`):
//   "bytes"          token = byte value, vocabulary 256 (the default of `data prepare`)
//   "sentencepiece"  a SentencePiece model (BPE or unigram, Debian's libsentencepiece) trained by
//                    `data prepare --tokenizer bpe|unigram`; its serialized model travels with the
//                    tokens as the uint8 dataset /tokenizer/model, so any reader can decode
//   "imported"       ids imported from token shards (`data import`): no text behind them
// Any other name (a file written by another tool) is kept and trained on like "imported": its
// ids cannot be turned into text or back.
//
// The models switchyard trains are lossless: identity normalization, whitespace kept, no dummy
// "▁" prefix, "\n" a piece of its own, and byte fallback (a byte no piece covers becomes one of 256
// byte pieces), so decode(encode(text)) == text for any valid UTF-8 text, and the ids of texts
// encoded one after the other decode to the texts one after the other.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace sy {

inline constexpr const char* kTokenizerBytes = "bytes";
inline constexpr const char* kTokenizerSentencePiece = "sentencepiece";
inline constexpr const char* kTokenizerImported = "imported";

class Tokenizer {
 public:
  static Tokenizer bytes();
  static Tokenizer imported(int64_t vocab_size);
  // Loads a serialized SentencePiece model; UsageError naming `source` when it does not load.
  static Tokenizer sentencepiece(std::string model, const std::string& source);
  // The tokenizer a file names: `name` as stored ("" = a file from before tokenizers were
  // stored, which can only be "bytes"), `model` its /tokenizer/model bytes (sentencepiece only),
  // `vocab_size` the file's vocabulary (what "imported" ids range over). UsageError naming
  // `source` for a sentencepiece model that is missing or does not load.
  static Tokenizer from_stored(const std::string& name, std::string model, int64_t vocab_size,
                               const std::string& source);

  const std::string& name() const { return name_; }
  // The serialized SentencePiece model (empty for the others).
  const std::string& model() const { return model_; }
  int64_t vocab_size() const { return vocab_size_; }

  // Whether text maps to ids and back ("bytes", "sentencepiece"); else ids are all there is.
  bool has_text() const { return kind_ != Kind::kIdsOnly; }

  // Token ids of `text`. UsageError saying why (and at which byte offset) when the text cannot be
  // encoded exactly: ids-only tokenizers have no text; SentencePiece needs valid UTF-8 and
  // refuses what it would change (an unknown character without byte fallback, a normalization).
  std::vector<int32_t> encode(std::string_view text) const;
  // The text of `ids` (ids outside the vocabulary are skipped). Ids-only: the ids in decimal,
  // space-separated.
  std::string decode(std::span<const int32_t> ids) const;

 private:
  enum class Kind { kBytes, kSentencePiece, kIdsOnly };
  Tokenizer() = default;
  Kind kind_ = Kind::kBytes;
  std::string name_;
  std::string model_;
  int64_t vocab_size_ = 0;
  std::shared_ptr<const sentencepiece::SentencePieceProcessor> sp_;
};

enum class SentencePieceType { kBpe, kUnigram };

// The lines SentencePiece trains on: each text's non-empty lines.
int64_t count_sentences(const std::vector<std::string>& texts);

// `data prepare --train-sentences`: the lines SentencePiece trains on at most.
inline constexpr int64_t kDefaultTrainSentences = 1000000;

// Trains a lossless SentencePiece model (see top) of exactly `vocab_size` pieces on the lines of
// `texts`: all of them, or when there are more than `max_sentences` (> 0) a uniform random sample
// of that many (fixed seed), so memory stays bounded. UsageError naming --vocab-size when
// SentencePiece cannot make that many pieces from the text or needs more (it reserves 3 control
// pieces and 256 byte pieces; every distinct character needs one).
Tokenizer train_sentencepiece(const std::vector<std::string>& texts, SentencePieceType type,
                              int64_t vocab_size, int64_t max_sentences = kDefaultTrainSentences);

// The byte offset of the first byte of `text` that is not part of valid UTF-8, or -1.
int64_t first_invalid_utf8(std::string_view text);

}  // namespace sy
