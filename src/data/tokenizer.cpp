#include "src/data/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <unordered_map>

#include "src/core/error.h"
#include "src/core/utf8.h"

namespace sy {

namespace {

// SentencePiece's max_sentence_length (bytes): it skips a longer sentence without a word.
constexpr size_t kMaxSentence = 65536;

// The training sentences: the non-empty lines of every text (SentencePiece learns pieces inside
// lines; "\n" is a user-defined piece of its own), a line longer than kMaxSentence cut into
// pieces (long_line_piece_end): SentencePiece skipped them silently (a text without newlines
// trained on nothing).
class LineIterator : public sentencepiece::SentenceIterator {
 public:
  explicit LineIterator(const std::vector<std::string>& texts) : texts_(texts) { advance(); }
  bool done() const override { return text_ >= texts_.size(); }
  void Next() override { advance(); }
  const std::string& value() const override { return line_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  // Moves to the next non-empty line (or past the end).
  void advance() {
    while (text_ < texts_.size()) {
      const std::string& t = texts_[text_];
      if (pos_ >= t.size()) {
        ++text_;
        pos_ = 0;
        continue;
      }
      const size_t end = std::min(t.find('\n', pos_), t.size());
      if (end - pos_ > kMaxSentence) {
        const size_t cut = long_line_piece_end(t, pos_, kMaxSentence);
        line_.assign(t, pos_, cut - pos_);
        pos_ = cut;  // the rest of the line next
        return;
      }
      line_.assign(t, pos_, end - pos_);
      pos_ = end + 1;
      if (!line_.empty()) return;
    }
  }

  const std::vector<std::string>& texts_;
  size_t text_ = 0, pos_ = 0;
  std::string line_;
};

// Why SentencePiece gives `text` back differently from byte `at` on (a character's first byte).
std::string why_inexact(const sentencepiece::SentencePieceProcessor& sp, const std::string& text,
                        size_t at) {
  if (at >= text.size())
    return "the model adds text at its end (a SentencePiece setting switchyard cannot undo)";
  const size_t n = std::max<size_t>(utf8_length(text, at), 1);
  const std::string ch = text.substr(at, n);
  // The character as U+XXXX, after itself when it is printable.
  char code[16];
  std::snprintf(code, sizeof code, "U+%04X", utf8_code_point(text, at, n));
  const std::string shown =
      static_cast<unsigned char>(ch[0]) < 0x20 ? code : "'" + ch + "' (" + code + ")";
  if (ch == " ")
    return "the model removes extra whitespace (at the start or end of a text, or several in a "
           "row: spm_train's --remove_extra_whitespaces, true by default)";
  if (ch == "\xE2\x96\x81")
    return "the character " + shown +
           " is SentencePiece's mark for a space: the model gives it back as a space, not as "
           "itself";
  std::vector<int> ids;
  if (sp.Encode(ch, &ids).ok() && std::find(ids.begin(), ids.end(), sp.unk_id()) != ids.end())
    return "the model has no piece for the character " + shown +
           " and no byte fallback to spell it in bytes (it would become <unk>)";
  return "the model's normalization rewrites the character " + shown +
         " (e.g. NFKC, spm_train's default --normalization_rule_name nmt_nfkc, which also turns "
         "newlines and tabs into spaces)";
}

}  // namespace

Tokenizer Tokenizer::bytes() {
  Tokenizer t;
  t.kind_ = Kind::kBytes;
  t.name_ = kTokenizerBytes;
  t.vocab_size_ = kByteVocab;
  return t;
}

Tokenizer Tokenizer::imported(int64_t vocab_size) {
  Tokenizer t;
  t.kind_ = Kind::kIdsOnly;
  t.name_ = kTokenizerImported;
  t.vocab_size_ = vocab_size;
  return t;
}

Tokenizer Tokenizer::sentencepiece(std::string model, const std::string& source) {
  auto sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
  const auto status = sp->LoadFromSerializedProto(model);
  if (!status.ok()) {
    // Bytes that are no ModelProto at all: SentencePiece says where in its own source it failed
    // ("Internal: ./src/sentencepiece_processor.cc(232) [model_proto->ParseFromArray(...)]").
    const std::string said = status.ToString();
    const bool not_a_model = said.find("ParseFromArray") != std::string::npos;
    throw UsageError(source + ": the SentencePiece model (" + std::to_string(model.size()) +
                     " bytes) does not load: " +
                     (not_a_model ? "its bytes are not a SentencePiece ModelProto" : said));
  }
  Tokenizer t;
  t.kind_ = Kind::kSentencePiece;
  t.name_ = kTokenizerSentencePiece;
  t.model_ = std::move(model);
  t.vocab_size_ = sp->GetPieceSize();
  // "\n" alone, which encode(text, after_newline) puts in front of a text and takes off again.
  SY_CHECK(sp->Encode("\n", &t.newline_ids_).ok(), "SentencePiece cannot encode a newline");
  t.sp_ = std::move(sp);
  return t;
}

Tokenizer load_sentencepiece_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw UsageError("--tokenizer-model '" + path + "' not found");
  if (std::filesystem::is_directory(path, ec))
    throw UsageError("--tokenizer-model '" + path +
                     "' is a directory, expected a SentencePiece .model file");
  std::ifstream in(path, std::ios::binary);
  std::string model{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (!in && !in.eof()) throw UsageError("--tokenizer-model '" + path + "' cannot be read");
  if (model.empty())
    throw UsageError("--tokenizer-model '" + path + "' is empty, expected a SentencePiece model");
  try {
    return Tokenizer::sentencepiece(std::move(model), "--tokenizer-model '" + path + "'");
  } catch (const UsageError& e) {
    throw UsageError(std::string(e.what()) +
                     " -- expected a serialized SentencePiece model (spm_train's <prefix>.model, "
                     "a Llama tokenizer.model)");
  }
}

bool Tokenizer::has_byte_fallback() const {
  if (kind_ != Kind::kSentencePiece) return false;
  int64_t byte_pieces = 0;
  for (int id = 0; id < sp_->GetPieceSize(); ++id) byte_pieces += sp_->IsByte(id) ? 1 : 0;
  return byte_pieces == kByteVocab;
}

Tokenizer Tokenizer::from_stored(const std::string& name, std::string model, int64_t vocab_size,
                                 const std::string& source) {
  if (name.empty() || name == kTokenizerBytes) return bytes();
  if (name == kTokenizerSentencePiece) {
    if (model.empty())
      throw UsageError(source + ": tokenizer is sentencepiece but /tokenizer/model is missing");
    return sentencepiece(std::move(model), source);
  }
  Tokenizer t = imported(vocab_size);
  t.name_ = name;
  return t;
}

bool Tokenizer::adds_dummy_prefix() const {
  if (kind_ != Kind::kSentencePiece) return false;
  std::vector<std::string> pieces;
  return sp_->Encode("a", &pieces).ok() && !pieces.empty() &&
         pieces.front().starts_with("\xe2\x96\x81");  // "▁" (U+2581)
}

Tokenizer::SpecialPieces Tokenizer::special_pieces() const {
  SpecialPieces out;
  if (kind_ != Kind::kSentencePiece) return out;
  const auto piece = [&](int id) {
    return id >= 0 && id < sp_->GetPieceSize() ? SpecialPiece{id, sp_->IdToPiece(id)}
                                               : SpecialPiece{};
  };
  out.unk = piece(sp_->unk_id());
  out.bos = piece(sp_->bos_id());
  out.eos = piece(sp_->eos_id());
  return out;
}

std::vector<int32_t> Tokenizer::never_encoded_ids() const {
  std::vector<int32_t> ids;
  if (kind_ != Kind::kSentencePiece) return ids;
  for (int id = 0; id < sp_->GetPieceSize(); ++id)
    if (sp_->IsControl(id) || sp_->IsUnknown(id) || sp_->IsUnused(id)) ids.push_back(id);
  return ids;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool after_newline) const {
  if (kind_ == Kind::kBytes) {
    std::vector<int32_t> ids(text.size());
    std::transform(text.begin(), text.end(), ids.begin(),
                   [](char c) { return static_cast<int32_t>(static_cast<unsigned char>(c)); });
    return ids;
  }
  if (kind_ == Kind::kIdsOnly)
    throw UsageError("tokenizer '" + name_ +
                     "' has no text (ids imported without a tokenizer, or written by another "
                     "tool): there is no way to turn text into its ids");
  const int64_t bad = first_invalid_utf8(text);
  if (bad >= 0)
    throw InexactText("the text is not valid UTF-8", bad,
                      " (SentencePiece encodes UTF-8 text only)");
  // After a newline: "\n" + text, whose first ids (those of "\n" alone: a dummy "▁" and the
  // newline) come off again.
  const std::string context = after_newline ? "\n" : "";
  const std::string full = context + std::string(text);
  std::vector<int> ids;
  const auto status = sp_->Encode(full, &ids);
  if (!status.ok()) throw UsageError("SentencePiece cannot encode the text: " + status.ToString());
  std::string back;
  if (!sp_->Decode(ids, &back).ok() || back != full) {
    size_t i = 0;
    while (i < back.size() && i < full.size() && back[i] == full[i]) ++i;
    while (i > 0 && i < full.size() && (static_cast<unsigned char>(full[i]) & 0xC0) == 0x80) --i;
    const int64_t offset = std::max<int64_t>(static_cast<int64_t>(i - context.size()), 0);
    throw InexactText("the tokenizer cannot encode the text exactly", offset,
                      ": " + why_inexact(*sp_, full, i));
  }
  size_t skip = 0;
  if (after_newline) {
    skip = newline_ids_.size();
    if (ids.size() < skip || !std::equal(newline_ids_.begin(), newline_ids_.end(), ids.begin()))
      throw UsageError(
          "the SentencePiece model joins a newline with the text after it (one of "
          "its pieces holds a newline), so a text cannot be encoded in blocks split "
          "after newlines");
  }
  return {ids.begin() + static_cast<std::ptrdiff_t>(skip), ids.end()};
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  if (kind_ == Kind::kBytes) {
    for (int32_t id : ids)
      if (id >= 0 && id < kByteVocab) out.push_back(static_cast<char>(id));
    return out;
  }
  if (kind_ == Kind::kIdsOnly) {
    for (int32_t id : ids) {
      if (!out.empty()) out += ' ';
      out += std::to_string(id);
    }
    return out;
  }
  std::vector<int> known;
  for (int32_t id : ids)
    if (id >= 0 && id < vocab_size_) known.push_back(id);
  const auto status = sp_->Decode(known, &out);
  SY_CHECK(status.ok(), "SentencePiece decode: " << status.ToString());
  return out;
}

size_t long_line_piece_end(std::string_view text, size_t at, size_t most) {
  size_t end = at + most;
  const size_t space = text.rfind(' ', end);
  if (space != std::string_view::npos && space > at + most / 2) return space;
  while (end > at + 1 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return end;
}

void encode_in_blocks(const Tokenizer& tok, std::string_view text, int64_t offset,
                      bool after_newline, size_t block,
                      const std::function<void(const std::vector<int32_t>&, size_t)>& take) {
  // SentencePiece's memory grows with the text it encodes at once (1.85 GB for one 11 MB line):
  // where a block would run more than kLongLine past its size (into a long line), it ends before
  // that line, and a line past block + kLongLine is encoded in pieces of at most kLongLine
  // (long_line_piece_end).
  constexpr size_t kLongLine = size_t{64} << 10;
  for (size_t at = 0; at < text.size();) {
    size_t end = text.find('\n', std::min(at + block, text.size()) - 1);
    end = end == std::string::npos ? text.size() : end + 1;
    if (end - at > block + kLongLine) {
      const size_t nl = text.rfind('\n', at + block - 1);
      if (nl != std::string::npos && nl >= at) {
        end = nl + 1;
      } else {
        end = long_line_piece_end(text, at, kLongLine);
      }
    }
    std::vector<int32_t> ids;
    try {
      ids = tok.encode(text.substr(at, end - at), at > 0 || after_newline);
    } catch (const InexactText& e) {
      throw UsageError(e.message_at(offset + static_cast<int64_t>(at) + e.offset()));
    }
    take(ids, end - at);
    at = end;
  }
}

int64_t count_sentences(const std::vector<std::string>& texts) {
  int64_t n = 0;
  for (LineIterator lines(texts); !lines.done(); lines.Next()) ++n;
  return n;
}

Tokenizer train_sentencepiece(const std::vector<std::string>& texts, SentencePieceType type,
                              int64_t vocab_size, int64_t max_sentences) {
  LineIterator lines(texts);
  // The sample of lines, when there are more than max_sentences, is the same in every run.
  sentencepiece::SetRandomGeneratorSeed(20240520);
  const std::unordered_map<std::string, std::string> args = {
      {"model_type", type == SentencePieceType::kBpe ? "bpe" : "unigram"},
      {"vocab_size", std::to_string(vocab_size)},
      // Lossless: every byte representable, nothing normalised or dropped, newlines kept.
      {"byte_fallback", "true"},
      {"character_coverage", "1.0"},
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      // No "▁" in front of a text: the ids of texts encoded one by one (each input's splits)
      // then decode, concatenated, to the concatenated texts.
      {"add_dummy_prefix", "false"},
      {"user_defined_symbols", "\n"},
      {"max_sentence_length", "65536"},
      {"minloglevel", "2"},  // SentencePiece's own progress log: warnings and errors only
      // At most max_sentences lines, sampled uniformly (reservoir) from all of them: memory stays
      // bounded on a corpus of any size.
      {"input_sentence_size", std::to_string(std::max<int64_t>(max_sentences, 0))},
      {"shuffle_input_sentence", "true"},
  };
  std::string model;
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &lines, &model);
  if (!status.ok()) {
    // SentencePiece's "Vocabulary size is smaller than required_chars. 300 vs 412. Increase
    // vocab_size or decrease character_coverage with --character_coverage option.": switchyard
    // keeps every character (coverage 1.0), so only --vocab-size can change.
    const std::string msg = status.ToString();
    const size_t at = msg.find("smaller than required_chars.");
    long given = 0, need = 0;
    if (at != std::string::npos &&
        std::sscanf(msg.c_str() + at, "smaller than required_chars. %ld vs %ld", &given, &need) ==
            2)
      throw UsageError("--vocab-size " + std::to_string(vocab_size) +
                       " is too small for the input: a lossless tokenizer keeps a piece for "
                       "every distinct character of the train text besides its control, byte "
                       "and newline pieces, " +
                       std::to_string(need) + " in all; use --vocab-size " + std::to_string(need) +
                       " or more");
    // "Vocabulary size too high (300). Please set it to a value <= 280.": the text has fewer
    // pieces to learn.
    const size_t high = msg.find("Please set it to a value <= ");
    long most = 0;
    if (high != std::string::npos &&
        std::sscanf(msg.c_str() + high, "Please set it to a value <= %ld", &most) == 1)
      throw UsageError("--vocab-size " + std::to_string(vocab_size) +
                       " is more pieces than SentencePiece finds in the train text; use "
                       "--vocab-size " +
                       std::to_string(most) + " or less (or give more text)");
    throw UsageError("--vocab-size " + std::to_string(vocab_size) +
                     ": SentencePiece cannot train this tokenizer on the input: " + msg);
  }
  return Tokenizer::sentencepiece(std::move(model), "the trained tokenizer");
}

}  // namespace sy
