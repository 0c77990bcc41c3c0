// The tokenizers a token file or a checkpoint names (SPEC section 8, root attribute `tokenizer`):
//   "bytes"          token = byte value, vocabulary 256 (the default of `data prepare`)
//   "sentencepiece"  a SentencePiece model (BPE or unigram, Debian's libsentencepiece) trained by
//                    `data prepare --tokenizer bpe|unigram`, or the user's own
//                    (`--tokenizer-model`, e.g. spm_train's output or a Llama tokenizer.model); its
//                    serialized model travels with the tokens as the uint8 dataset
//                    /tokenizer/model, so any reader can decode
//   "imported"       ids imported from token shards (`data import`): no text behind them
// Any other name (a file written by another tool) is kept and trained on like "imported": its
// ids cannot be turned into text or back. A token file naming one of the three in another case
// or one edit away ("SentencePiece", "byte") is refused as a slip (token_read.cpp).
//
// The models switchyard trains are lossless: identity normalization, whitespace kept, no dummy
// "▁" prefix, "\n" a piece of its own, and byte fallback (a byte no piece covers becomes one of 256
// byte pieces), so decode(encode(text)) == text for any valid UTF-8 text, and the ids of texts
// encoded one after the other decode to the texts one after the other. A user's model need not be
// lossless: encode() refuses any text it would not give back exactly (normalization such as NFKC,
// removed whitespace, a character it does not know and no byte fallback for).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "src/core/error.h"
#include "src/core/utf8.h"  // first_invalid_utf8: what encode() refuses first

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace sy {

inline constexpr const char* kTokenizerBytes = "bytes";
inline constexpr const char* kTokenizerSentencePiece = "sentencepiece";
inline constexpr const char* kTokenizerImported = "imported";
inline constexpr int64_t kByteVocab = 256;  // the "bytes" tokenizer's ids: 0..255

// A text a tokenizer cannot encode exactly: "<head> at byte offset N<tail>", N the byte of the
// text from which it would read differently; message_at() says it with another offset (where the
// text sits in its file).
class InexactText : public UsageError {
 public:
  InexactText(std::string head, int64_t offset, std::string tail)
      : UsageError(head + " at byte offset " + std::to_string(offset) + tail),
        head_(std::move(head)),
        tail_(std::move(tail)),
        offset_(offset) {}
  int64_t offset() const { return offset_; }
  std::string message_at(int64_t offset) const {
    return head_ + " at byte offset " + std::to_string(offset) + tail_;
  }

 private:
  std::string head_, tail_;
  int64_t offset_;
};

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
  // SentencePiece: whether the model has the 256 byte pieces of byte fallback; without them a
  // character it never saw cannot be encoded exactly.
  bool has_byte_fallback() const;
  // SentencePiece: whether the model puts a dummy "▁" in front of a text (spm_train's default,
  // Llama's; not the models switchyard trains): what Hugging Face calls add_prefix_space.
  bool adds_dummy_prefix() const;
  // SentencePiece: the model's own unknown, begin and end pieces (id and text; id -1 where the
  // model has none: spm_train --bos_id=-1). switchyard's own models have SentencePiece's default
  // <unk> 0, <s> 1, </s> 2; a user's may have other ids or none. Others: all -1.
  struct SpecialPiece {
    int id = -1;
    std::string piece;
  };
  struct SpecialPieces {
    SpecialPiece unk, bos, eos;
  };
  SpecialPieces special_pieces() const;
  // The ids no text encodes to: SentencePiece's control and unknown pieces (<s>, </s>, <unk>:
  // encode() refuses a text that would need <unk>), so a token file never holds them and a model
  // never learns them as targets. Empty for the others.
  std::vector<int32_t> never_encoded_ids() const;

  // Token ids of `text`. UsageError when ids-only tokenizers (no text); InexactText when the text
  // cannot be encoded exactly: SentencePiece needs valid UTF-8 and refuses what it would change
  // (an unknown character without byte fallback, a normalization, removed whitespace).
  // `after_newline`: the ids `text` has right after a "\n" of the same text (blocks of a long
  // text split after newlines), which for a model with a dummy "▁" prefix (spm_train's default,
  // Llama's) differ from the ids of `text` alone: the ids of all blocks then decode to the whole.
  std::vector<int32_t> encode(std::string_view text, bool after_newline = false) const;
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
  std::vector<int> newline_ids_;  // SentencePiece: the ids of "\n" alone
};

enum class SentencePieceType { kBpe, kUnigram };

// Where a piece of a line that starts at `at` and runs past at + `most` bytes ends: before the
// last space in the piece's second half (SentencePiece's pieces never cross a space, so the ids
// of the pieces are the whole line's), else at the last character boundary at or before
// at + most. Training (SentencePiece skips a sentence past 64 KiB) and encoding (its memory grows
// with the text encoded at once) cut long lines here.
size_t long_line_piece_end(std::string_view text, size_t at, size_t most);

// Encodes `text` (which sits at byte `offset` of its file) in blocks of about `block` bytes that
// end after a newline, or before a space inside a line too long for one: SentencePiece's pieces
// cross neither, and each block after the first is encoded as it reads after a newline (as is the
// text itself when `after_newline`), so the ids are those of the whole text (but in a line of over
// block + 64 KiB without a space, which is cut at a character: long_line_piece_end) and a dummy
// "▁" comes only in front of it, while SentencePiece's memory is that of one block (it grows with
// the text encoded at once: 784 MB for a 5.6 MB prompt encoded whole). `take(ids, bytes)` hears
// each block's ids and length. UsageError for text it cannot encode exactly, naming the file's
// offset.
void encode_in_blocks(const Tokenizer& tok, std::string_view text, int64_t offset,
                      bool after_newline, size_t block,
                      const std::function<void(const std::vector<int32_t>&, size_t)>& take);

// The lines SentencePiece trains on: each text's non-empty lines, one past 64 KiB (SentencePiece's
// longest sentence) counted as the pieces it is cut into.
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

// A SentencePiece model file a user brings (`data prepare --tokenizer-model`). UsageError naming
// `path` when it is missing, unreadable, or not a SentencePiece model (SentencePiece's message).
Tokenizer load_sentencepiece_file(const std::string& path);

}  // namespace sy
