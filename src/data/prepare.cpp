// `data prepare` (prepare_token_file, tokens.h): text files into a token file, in two passes
// over the inputs -- checked and split (and, for a tokenizer trained here, its train text), then
// read again and encoded -- so the whole text is never held with its ids. Byte tokens are written
// as they are read; SentencePiece ids are held until the count is known (the room check before
// HDF5 writes needs it).
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kernels/cpu/philox.h"
#include "src/core/durable_file.h"
#include "src/core/error.h"
#include "src/core/number_text.h"
#include "src/core/paths.h"
#include "src/core/progress.h"
#include "src/data/tokenizer.h"
#include "src/data/tokens.h"

namespace sy {

namespace {

namespace fs = std::filesystem;

// ": Input/output error" after a failed stream operation, when the system said why (errno is set
// by the read(2) or open(2) below a file stream, which the stream does not promise); else "".
std::string os_reason() {
  return errno != 0 ? std::string(": ") + std::strerror(errno) : std::string();
}

// What a file starting with `head` (its first 512 bytes, or fewer) is when its signature says it
// is not text: an HDF5 file (a token file given as an input was read as bytes, its /train ids
// with it, unsaid), an llm.c token shard (`data import` reads those), an archive or a compressed
// file; nullptr otherwise. Each signature holds bytes that are not UTF-8 text.
const char* binary_kind(std::string_view head) {
  using namespace std::string_view_literals;
  static constexpr std::pair<std::string_view, const char*> kSignatures[] = {
      {"\x89HDF\r\n\x1a\n"sv, "an HDF5 file"},
      {"\x88\xd8\x34\x01"sv, "an llm.c token shard (data import --format llmc reads it)"},
      {"\xa1\xd9\x34\x01"sv, "an llm.c token shard (data import --format llmc reads it)"},
      {"\x1f\x8b"sv, "gzip-compressed"},
      {"\xfd\x37zXZ\x00"sv, "xz-compressed"},
      {"\x28\xb5\x2f\xfd"sv, "zstd-compressed"},
      {"PK\x03\x04"sv, "a zip archive"},
  };
  for (const auto& [signature, kind] : kSignatures)
    if (head.starts_with(signature)) return kind;
  // bzip2: "BZh", the block size, then the block magic (pi in BCD)
  if (head.size() >= 10 && head.starts_with("BZh") &&
      head.substr(4, 6) == "\x31\x41\x59\x26\x53\x59"sv)
    return "bzip2-compressed";
  if (head.size() >= 262 && head.substr(257, 5) == "ustar"sv) return "a tar archive";
  return nullptr;
}

// UsageError naming `path` when `head` says it is not text.
void refuse_binary(const std::string& path, std::string_view head) {
  if (const char* kind = binary_kind(head))
    throw UsageError("input file '" + path + "' is " + kind +
                     ", not text: data prepare reads text files (a token file is trained on "
                     "as it is, with data.path; a compressed text is read once decompressed)");
}

std::vector<unsigned char> read_input(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw UsageError("input file '" + path + "' not found");
  if (fs::is_directory(path, ec))
    throw UsageError("input file '" + path + "' is a directory, expected a text file");
  if (const std::string why = unreadable_reason(path); !why.empty())
    throw UsageError("input file '" + path + "' " + why);
  errno = 0;  // what the stream's open and reads leave is theirs
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError("input file '" + path + "' cannot be read" + os_reason());
  std::vector<unsigned char> bytes;
  // A regular file in one read of its size (a vector grown by doubling held up to 3x the text
  // while it moved); a pipe as it comes.
  if (const auto size = fs::file_size(path, ec); !ec && fs::is_regular_file(path, ec)) {
    // Its signature first: a multi-GB token file or archive is refused before it is held.
    std::string head(static_cast<size_t>(std::min<uintmax_t>(size, 512)), '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    refuse_binary(path, std::string_view(head.data(), static_cast<size_t>(in.gcount())));
    in.clear();
    in.seekg(0);
    bytes.resize(static_cast<size_t>(size));
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
    bytes.resize(static_cast<size_t>(in.gcount()));
  } else {
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (in.bad()) throw UsageError("input file '" + path + "' cannot be read" + os_reason());
  if (bytes.empty()) throw UsageError("input file '" + path + "' is empty");
  refuse_binary(path, std::string_view(reinterpret_cast<const char*>(bytes.data()),
                                       std::min<size_t>(bytes.size(), 512)));  // a pipe's
  return bytes;
}

// -sum_v p_v ln p_v of the frequencies counts[v] / sum, in token-id order.
double entropy_of_counts(const std::vector<int64_t>& counts) {
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  if (total == 0) return 0.0;
  const double n = static_cast<double>(total);
  double h = 0.0;
  for (int64_t c : counts)
    if (c > 0) h -= static_cast<double>(c) / n * std::log(static_cast<double>(c) / n);
  return h;
}

// What the options ask for.
struct Choice {
  bool bytes = false;       // byte tokens
  bool user_model = false;  // encode with --tokenizer-model
  bool training = false;    // train a SentencePiece model here (bpe | unigram)
  std::string kind;         // bytes | bpe | unigram
  int64_t train_sentences = 0;
};

// The options, checked before any input is read: UsageError naming one that cannot work.
Choice check_options(const PrepareOptions& opt) {
  if (opt.inputs.empty()) throw UsageError("data prepare: no input files given");
  if (!(opt.val_fraction >= 0.0 && opt.val_fraction < 1.0))
    throw UsageError("data prepare: val_fraction " + number_text(opt.val_fraction) +
                     " must be in [0, 1)");
  if (opt.val_fraction == 0.0)
    throw UsageError(
        "data prepare: --val-fraction 0 leaves /val empty, and `switchyard train` "
        "needs a validation split; hold some text out (the default is 0.1)");
  if (opt.output.empty()) throw UsageError("data prepare: no output file given");
  files::check_output_file(opt.output);
  for (const auto& input : opt.inputs)
    refuse_output_as_input(opt.output, input, "data prepare", "the token file");
  // Every empty input at once (read_input would name the first, a run each).
  std::vector<std::string> empty;
  for (const auto& input : opt.inputs) {
    std::error_code ec;
    if (fs::is_regular_file(input, ec) && fs::file_size(input, ec) == 0 && !ec)
      empty.push_back("'" + input + "'");
  }
  if (empty.size() > 1) {
    std::string names;
    for (size_t i = 0; i < empty.size() && i < 20; ++i) names += (i ? ", " : "") + empty[i];
    throw UsageError("data prepare: " + std::to_string(empty.size()) +
                     " input files are empty: " + names + (empty.size() > 20 ? ", ..." : ""));
  }
  const bool user_model = !opt.tokenizer_model.empty();
  if (user_model && opt.tokenizer)
    throw UsageError("data prepare: --tokenizer " + *opt.tokenizer +
                     " with --tokenizer-model: the given model is the tokenizer and nothing is "
                     "trained; leave out --tokenizer (or --tokenizer-model, to train one)");
  if (user_model && opt.vocab_size != 0)
    throw UsageError(
        "data prepare: --vocab-size with --tokenizer-model: nothing is trained, the "
        "vocabulary is the model's pieces; leave out --vocab-size");
  if (user_model && opt.train_sentences)
    throw UsageError(
        "data prepare: --train-sentences with --tokenizer-model: nothing is "
        "trained; leave out --train-sentences");
  const std::string kind = opt.tokenizer.value_or(kTokenizerBytes);
  const int64_t train_sentences = opt.train_sentences.value_or(kDefaultTrainSentences);
  const bool bytes = !user_model && kind == kTokenizerBytes;
  if (!user_model && !bytes && kind != "bpe" && kind != "unigram")
    throw UsageError("data prepare: --tokenizer '" + kind + "' is not one of bytes, bpe, unigram");
  if (bytes && opt.vocab_size != 0 && opt.vocab_size != kByteVocab)
    throw UsageError("data prepare: --vocab-size " + std::to_string(opt.vocab_size) +
                     " with --tokenizer bytes (its vocabulary is 256; pick --tokenizer bpe or "
                     "unigram for another size)");
  if (bytes && opt.train_sentences)
    throw UsageError(
        "data prepare: --train-sentences with --tokenizer bytes: nothing is trained "
        "(it is for bpe and unigram); leave out --train-sentences");
  // A lossless tokenizer holds 3 control pieces, the 256 bytes and "\n" before any character.
  constexpr int64_t kLeastPieces = 3 + kByteVocab + 1;
  if (!user_model && !bytes && opt.vocab_size <= 0)
    throw UsageError("data prepare: --tokenizer " + kind +
                     " needs --vocab-size N (the number of pieces to learn, at least " +
                     std::to_string(kLeastPieces) + ")" +
                     (opt.vocab_size < 0 ? "; got " + std::to_string(opt.vocab_size) : ""));
  if (!user_model && !bytes && opt.vocab_size < kLeastPieces)
    throw UsageError("data prepare: --vocab-size " + std::to_string(opt.vocab_size) +
                     " is too small: a lossless tokenizer keeps 3 control pieces, the 256 bytes "
                     "and the newline, and a piece for every distinct character of the train "
                     "text; use --vocab-size " +
                     std::to_string(kLeastPieces) + " or more");
  // SentencePiece reads the size as an int32 (it failed after the text was read: "cannot parse
  // \"5000000000\" as int"), as model.vocab_size is at most INT32_MAX.
  if (!user_model && !bytes && opt.vocab_size > INT32_MAX)
    throw UsageError("data prepare: --vocab-size " + std::to_string(opt.vocab_size) +
                     " is too large: at most 2147483647 (SentencePiece's and model.vocab_size's "
                     "limit)");
  if (train_sentences < 0 || (train_sentences > 0 && train_sentences <= 100))
    throw UsageError("data prepare: --train-sentences " + std::to_string(train_sentences) +
                     " must be 0 (every line) or more than 100 (SentencePiece's least sample)");
  Choice c;
  c.bytes = bytes;
  c.user_model = user_model;
  c.training = !bytes && !user_model;
  c.kind = kind;
  c.train_sentences = train_sentences;
  return c;
}

// Pass 1's result: each input checked and split, and what pass 2 needs to read it again.
struct Inputs {
  struct Split {
    size_t size, at;  // the input's bytes; its val part starts at `at`
    uint64_t hash;    // of its bytes (FNV-1a), to know them again
  };
  std::vector<Split> splits;
  std::vector<std::string> train_parts;  // the train text, while a tokenizer trains on it
  // An input that is no regular file (a pipe, <(zcat corpus.gz)) cannot be read twice: kept.
  std::vector<std::vector<unsigned char>> kept;

  static uint64_t hash_of(const std::vector<unsigned char>& content) {
    return philox::fnv1a64(reinterpret_cast<const char*>(content.data()), content.size());
  }
  // Input i read again (the same bytes as in pass 1, or an error).
  std::vector<unsigned char> read_again(const PrepareOptions& opt, size_t i) {
    if (!kept[i].empty()) return std::move(kept[i]);  // pass 1's own bytes
    std::vector<unsigned char> content = read_input(opt.inputs[i]);
    if (content.size() != splits[i].size)
      throw UsageError("input file '" + opt.inputs[i] + "' changed while data prepare read it (" +
                       std::to_string(splits[i].size) + " bytes, then " +
                       std::to_string(content.size()) + ")");
    // Bytes changed in place (QA: a U+2581 written while the tokenizer trained passed pass 1's
    // check unseen, and the file decoded it as a space, exit 0).
    if (hash_of(content) != splits[i].hash)
      throw UsageError("input file '" + opt.inputs[i] + "' changed while data prepare read it " +
                       "(the same " + std::to_string(content.size()) +
                       " bytes, other values the second time)");
    return content;
  }
  // Input i's train or val part of `content`.
  std::string_view part(const std::vector<unsigned char>& content, size_t i, bool train) const {
    const std::string_view all(reinterpret_cast<const char*>(content.data()), content.size());
    return train ? all.substr(0, splits[i].at) : all.substr(splits[i].at);
  }
};

// Pass 1, an input at a time: checked (UTF-8 and SentencePiece's space mark before a tokenizer
// trains, minutes on a large corpus), split; the train parts kept only while a tokenizer trains
// on them (it was: 491 MB of text took 2.66 GB with --tokenizer bytes). Adds the bytes to `r`.
Inputs read_and_split(const PrepareOptions& opt, const Choice& c, PrepareReport& r) {
  Inputs in;
  in.kept.resize(opt.inputs.size());
  for (size_t i = 0; i < opt.inputs.size(); ++i) {
    const std::string& input = opt.inputs[i];
    std::vector<unsigned char> content = read_input(input);
    const size_t n = content.size();
    // Before SentencePiece trains (minutes on a large corpus), not when encoding after it.
    const int64_t bad = c.bytes ? -1
                                : first_invalid_utf8(std::string_view(
                                      reinterpret_cast<const char*>(content.data()), n));
    if (bad >= 0)
      throw UsageError(
          "input file '" + input + "': the text is not valid UTF-8 at byte offset " +
          std::to_string(bad) +
          " (SentencePiece encodes UTF-8 text only; --tokenizer bytes takes any bytes)");
    // SentencePiece writes a space as U+2581: a tokenizer it trains gives that character back as
    // a space. Said before training (the check after it came minutes later, and blamed the
    // normalization); a user's model is checked when it encodes.
    if (c.training)
      if (const auto at = std::string_view(reinterpret_cast<const char*>(content.data()), n)
                              .find("\xE2\x96\x81");
          at != std::string_view::npos)
        throw UsageError("input file '" + input +
                         "': the text holds U+2581 ('\xE2\x96\x81') at byte "
                         "offset " +
                         std::to_string(at) +
                         ", which SentencePiece uses for a space: the tokenizer would give it "
                         "back as a space, not as itself; replace it, or use --tokenizer bytes");
    size_t split = n - static_cast<size_t>(std::floor(static_cast<double>(n) * opt.val_fraction));
    // SentencePiece reads UTF-8: never cut a character in two.
    while (!c.bytes && split < n && (content[split] & 0xC0) == 0x80) ++split;
    in.splits.push_back({n, split, Inputs::hash_of(content)});
    if (c.training)
      in.train_parts.emplace_back(content.begin(),
                                  content.begin() + static_cast<std::ptrdiff_t>(split));
    r.train_bytes += static_cast<int64_t>(split);
    r.val_bytes += static_cast<int64_t>(n - split);
    std::error_code ec;
    if (!fs::is_regular_file(input, ec)) in.kept[i] = std::move(content);
  }
  if (r.val_bytes == 0)
    throw UsageError("data prepare: --val-fraction " + number_text(opt.val_fraction) + " of " +
                     std::to_string(r.train_bytes) +
                     " bytes holds out no text, so /val would be empty; raise --val-fraction");
  return in;
}

using Say = std::function<void(const std::string&)>;

// The tokenizer: bytes, the user's model (loaded before the inputs were read), or one
// SentencePiece trains on the train parts.
Tokenizer tokenizer_for(const PrepareOptions& opt, const Choice& c, std::optional<Tokenizer> user,
                        const Inputs& in, const Say& say) {
  if (c.bytes) return Tokenizer::bytes();
  if (c.user_model) {
    say("encoding with the SentencePiece model '" + opt.tokenizer_model + "' (" +
        std::to_string(user->vocab_size()) + " pieces" +
        (user->has_byte_fallback()
             ? ", byte fallback)"
             : "; no byte fallback: a character it has no piece for cannot be encoded)"));
    return std::move(*user);
  }
  const int64_t lines = count_sentences(in.train_parts);
  const bool sampled = c.train_sentences > 0 && lines > c.train_sentences;
  say("training the " + c.kind + " tokenizer (" + std::to_string(opt.vocab_size) + " pieces) on " +
      (sampled ? "a random sample of " + std::to_string(c.train_sentences) + " of the " +
                     std::to_string(lines) + " lines (--train-sentences)"
               : "all " + std::to_string(lines) + " lines") +
      " (non-empty ones; a line past 64 KiB counts as its 64 KiB parts)" +
      " of the train text ...");
  const ProgressEta clock(1, 0.0);
  Tokenizer trained = train_sentencepiece(
      in.train_parts, c.kind == "bpe" ? SentencePieceType::kBpe : SentencePieceType::kUnigram,
      opt.vocab_size, c.train_sentences);
  char buf[64];
  std::snprintf(buf, sizeof buf, "trained the tokenizer in %.1f s", clock.elapsed_s());
  say(buf);
  return trained;
}

// Pass 2 for byte tokens: as many as the text's bytes, known before encoding, so the file is
// written as the inputs are read, a block at a time.
void write_byte_tokens(const PrepareOptions& opt, const Tokenizer& tok, Inputs& in,
                       PrepareReport& r, const Say& say) {
  ProgressEta eta(r.train_bytes + r.val_bytes, opt.progress_every_s);
  int64_t encoded = 0;
  // Byte tokens: as many as the text's bytes, known before encoding, so the file is written
  // as the inputs are read, a block at a time.
  TokenFileWriter writer(opt.output, tok.vocab_size(),
                         token_file_bytes(tok.vocab_size(), r.train_bytes + r.val_bytes, 0));
  std::vector<int64_t> train_counts(kByteVocab, 0), val_counts(kByteVocab, 0);
  constexpr size_t kBlock = size_t{1} << 22;
  std::vector<uint32_t> ids;
  const auto append = [&](std::string_view text, bool train) {
    for (size_t at = 0; at < text.size(); at += kBlock) {
      const size_t end = std::min(text.size(), at + kBlock);
      ids.resize(end - at);
      for (size_t k = 0; k < ids.size(); ++k) {
        ids[k] = static_cast<unsigned char>(text[at + k]);
        ++(train ? train_counts : val_counts)[ids[k]];
      }
      if (train)
        writer.append_train(ids);
      else
        writer.append_val(ids);
      encoded += static_cast<int64_t>(end - at);
      if (auto line = eta.update(encoded)) say("encoding: " + *line);
    }
  };
  for (size_t i = 0; i < opt.inputs.size(); ++i) {
    const std::vector<unsigned char> content = in.read_again(opt, i);
    append(in.part(content, i, true), true);
    append(in.part(content, i, false), false);
  }
  writer.commit(tok);
  r.train_tokens = r.train_bytes;
  r.val_tokens = r.val_bytes;
  r.train_unigram_nats = entropy_of_counts(train_counts);
  r.val_unigram_nats = entropy_of_counts(val_counts);
}

// Pass 2 for SentencePiece: each input encoded in blocks (encode_in_blocks); the ids held until
// their count is known.
void write_sentencepiece_tokens(const PrepareOptions& opt, const Choice& c, const Tokenizer& tok,
                                Inputs& in, PrepareReport& r, const Say& say) {
  ProgressEta eta(r.train_bytes + r.val_bytes, opt.progress_every_s);
  int64_t encoded = 0;
  std::vector<uint32_t> train, val;
  // A split's parts follow one another: a part after the first is encoded as it reads after a
  // newline (a model's dummy "▁" prefix belongs in front of a split's first text only).
  auto encode_into = [&](std::vector<uint32_t>& dst, std::string_view text, size_t input,
                         int64_t file_offset) {
    try {
      encode_in_blocks(tok, text, file_offset, !dst.empty(), opt.encode_block_bytes,
                       [&](const std::vector<int32_t>& ids, size_t n) {
                         dst.insert(dst.end(), ids.begin(), ids.end());
                         encoded += static_cast<int64_t>(n);
                         if (auto line = eta.update(encoded)) say("encoding: " + *line);
                       });
    } catch (const UsageError& e) {
      throw UsageError("input file '" + opt.inputs[input] + "': " + e.what() +
                       (c.user_model ? "; encode with a model that gives any text back exactly "
                                       "(spm_train --normalization_rule_name=identity "
                                       "--remove_extra_whitespaces=false --byte_fallback=true), or "
                                       "let data prepare train one (--tokenizer bpe|unigram "
                                       "--vocab-size N)"
                                     : ""));
    }
  };
  for (size_t i = 0; i < opt.inputs.size(); ++i) {
    const std::vector<unsigned char> content = in.read_again(opt, i);
    encode_into(train, in.part(content, i, true), i, 0);
    encode_into(val, in.part(content, i, false), i, static_cast<int64_t>(in.splits[i].at));
  }
  char buf[96];
  std::snprintf(buf, sizeof buf, "encoded %zu tokens in %.1f s", train.size() + val.size(),
                eta.elapsed_s());
  say(buf);

  TokenFileWriter writer(
      opt.output, tok.vocab_size(),
      token_file_bytes(tok.vocab_size(), static_cast<int64_t>(train.size() + val.size()),
                       static_cast<int64_t>(tok.model().size())));
  writer.append_train(train);
  writer.append_val(val);
  writer.commit(tok);

  r.train_tokens = static_cast<int64_t>(train.size());
  r.val_tokens = static_cast<int64_t>(val.size());
  r.train_unigram_nats = unigram_entropy_nats(train);
  r.val_unigram_nats = unigram_entropy_nats(val);
}

}  // namespace

double unigram_entropy_nats(const std::vector<uint32_t>& tokens) {
  std::vector<int64_t> counts;
  for (uint32_t t : tokens) {
    if (t >= counts.size()) counts.resize(static_cast<size_t>(t) + 1, 0);
    ++counts[t];
  }
  return entropy_of_counts(counts);
}

PrepareReport prepare_token_file(const PrepareOptions& opt) {
  const Choice c = check_options(opt);
  // Before the inputs are read: a model that does not load is refused at once.
  std::optional<Tokenizer> user;
  if (c.user_model) user.emplace(load_sentencepiece_file(opt.tokenizer_model));
  const Say say = [&](const std::string& line) {
    if (opt.on_progress) opt.on_progress(line);
  };
  PrepareReport r;
  Inputs in = read_and_split(opt, c, r);
  say("read " + std::to_string(opt.inputs.size()) +
      " input file(s): " + std::to_string(r.train_bytes) + " bytes of train text, " +
      std::to_string(r.val_bytes) + " bytes of val text");
  const Tokenizer tok = tokenizer_for(opt, c, std::move(user), in, say);
  std::vector<std::string>().swap(in.train_parts);  // encoded from the files again, below
  r.vocab_size = tok.vocab_size();
  r.tokenizer = tok.name();
  if (c.bytes)
    write_byte_tokens(opt, tok, in, r, say);
  else
    write_sentencepiece_tokens(opt, c, tok, in, r, say);
  return r;
}

}  // namespace sy
