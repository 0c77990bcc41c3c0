// Token files (SPEC section 8): HDF5 with one-dimensional unsigned datasets /train and /val,
// root attributes vocab_size and tokenizer, and, for a SentencePiece tokenizer, its serialized
// model as the uint8 dataset /tokenizer/model. prepare_token_file() writes one from text files
// (bytes, or a SentencePiece model it trains); import_token_shards() (import.h) from token shards;
// read_token_file() loads and checks one before training starts, so a bad file is a UsageError
// (exit 2) naming the file and what is wrong, never a crash mid-run; open_token_file() checks it
// the same way and leaves the tokens in the file (the trainer: token_read.cpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "src/data/tokenizer.h"

namespace sy {

struct PrepareOptions {
  std::vector<std::string> inputs;  // text files, concatenated in this order
  std::string output;               // the .h5 file to write
  double val_fraction = 0.1;        // the LAST fraction of EACH input goes to /val
  // bytes | bpe | unigram (the last two: SentencePiece trained here). Unset: bytes, or with
  // tokenizer_model that model; given with tokenizer_model it is refused (nothing is trained).
  std::optional<std::string> tokenizer;
  // A serialized SentencePiece model file to encode with instead (spm_train's output, a Llama
  // tokenizer.model): the token file carries its bytes and its piece count is the vocab_size.
  std::string tokenizer_model;
  int64_t vocab_size = 0;  // bpe/unigram: the pieces to learn (required); bytes: 0 or 256
  // bpe/unigram: the lines SentencePiece trains on at most (a random sample when there are more;
  // 0: all), which bounds its memory on a large corpus. Unset: kDefaultTrainSentences.
  std::optional<int64_t> train_sentences;
  // Progress lines ("training the bpe tokenizer ...", "encoding: 34% ..., ETA ..."): long inputs
  // take minutes. Encoding lines come at most every progress_every_s seconds, the text encoded in
  // blocks of about encode_block_bytes.
  std::function<void(const std::string&)> on_progress;
  double progress_every_s = 10.0;
  size_t encode_block_bytes = size_t{1} << 20;
};

struct PrepareReport {
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  int64_t train_bytes = 0;  // text bytes behind each split (bytes per token = bytes / tokens)
  int64_t val_bytes = 0;
  int64_t vocab_size = 0;
  std::string tokenizer;
  // Entropy (nats) of each split's own unigram (token frequency) distribution: the lowest loss a
  // model that ignores context can reach on that split, the baseline a trained model must beat.
  double train_unigram_nats = 0.0;
  double val_unigram_nats = 0.0;
};

// -sum_v p_v ln p_v of the token frequencies p_v of `tokens` (0 for an empty span), summed in
// double in token-id order.
double unigram_entropy_nats(const std::vector<uint32_t>& tokens);

// Each input i of n_i bytes contributes its first n_i - v_i bytes to /train and its last v_i =
// floor(n_i * val_fraction) bytes to /val (moved forward to the next UTF-8 character boundary
// for SentencePiece), so both splits hold every file's style. Tokenizer "bytes" (vocab 256):
// token = byte value. "bpe"/"unigram": a lossless SentencePiece model (tokenizer.h) of
// vocab_size pieces is trained on the train parts, then every part is encoded with it.
// tokenizer_model: every part is encoded with the given SentencePiece model, whose bytes the file
// carries (tokenizer "sentencepiece", as a trained one). Each part (and each block of a long one)
// is encoded as it reads after the text before it, so the ids of a split decode to its text.
// Written to "<output>.tmp" and renamed, so a crash never leaves a half-written file under the real
// name. Throws UsageError naming the file or option for: no inputs, a missing/unreadable/empty
// input, a missing output directory, an output that is one of the inputs, val_fraction outside (0,
// 1) or one that holds out no byte, an unknown tokenizer, a vocab_size the tokenizer cannot have,
// an input SentencePiece cannot encode exactly (invalid UTF-8; with a user's model also a
// normalization, removed whitespace or an unknown character, named with the input file and byte
// offset), a tokenizer_model that does not load or comes with --tokenizer,
// --vocab-size or --train-sentences.
PrepareReport prepare_token_file(const PrepareOptions& opt);

// A generous bound on the bytes of a token file of `tokens` ids (train and val) whose tokenizer
// model has `tokenizer_model_bytes` (0 for bytes).
int64_t token_file_bytes(int64_t vocab_size, int64_t tokens, int64_t tokenizer_model_bytes);

// What a command that writes token files calls first, before any other HDF5 call: HDF5 1.10's
// clean-up at exit crashes (or loops) on a file whose write and close failed (a disk that filled
// during the write), after the message; it is turned off (H5dont_atexit), every file such a
// command opens being closed by then (TokenFileWriter). Past the file size limit a write fails
// with EFBIG instead of killing the process: app/main.cpp.
void prepare_for_token_file_writes();

// Writes a token file: "<path>.tmp", renamed to `path` by commit() (the destructor removes an
// uncommitted .tmp). Tokens are appended split by split, in blocks, so a file larger than memory
// can be written. `vocab_size` decides the id type (SPEC 8: uint16 up to 65536, else uint32).
class TokenFileWriter {
 public:
  // UsageError naming the file when it cannot be created (missing or read-only directory); an
  // Error (exit 1) when `file_bytes` (token_file_bytes) exceed the file system's free space or
  // the file size limit (ulimit -f), before anything is written.
  TokenFileWriter(const std::string& path, int64_t vocab_size, int64_t file_bytes);
  ~TokenFileWriter();
  TokenFileWriter(const TokenFileWriter&) = delete;
  TokenFileWriter& operator=(const TokenFileWriter&) = delete;

  // Appends ids (each < vocab_size) to /train or /val.
  void append_train(std::span<const uint32_t> ids);
  void append_val(std::span<const uint32_t> ids);
  // Root attributes vocab_size and tokenizer (with /tokenizer/model for SentencePiece), flush,
  // close, rename.
  void commit(const Tokenizer& tokenizer);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// What a token file says besides its tokens.
struct TokenFileInfo {
  int64_t vocab_size = 0;       // the file's vocabulary (<= the model's)
  std::string tokenizer;        // the root attribute (tokenizer.h)
  std::string tokenizer_model;  // /tokenizer/model (sentencepiece), else empty
  // token_source_fingerprint, where the trainer took it (its checkpoints store it: a resume on
  // another file under the same name is said); else empty.
  std::string fingerprint;
};

struct TokenData : TokenFileInfo {
  std::vector<int32_t> train, val;  // token ids, each in [0, vocab_size)
};

// One split of a token file, left in the file and read where asked: the trainer's, so that a
// rank holds no copy of data whose size has no bound (each rank held both splits as int32, a
// 10-billion-token file 40 GB per rank); a node's ranks share the reads in the page cache.
// Copies share the open file. One thread at a time (HDF5 is built without thread safety).
class TokenSplitReader {
 public:
  TokenSplitReader() = default;
  int64_t size() const { return size_; }
  // out[0 .. count) (=) tokens [first, first + count) as int32. Throws std::runtime_error naming
  // the file and the range when the read fails, or the index and the id when one is outside the
  // file's vocabulary (a rank's own failure: only the ranks reading that window meet it).
  void read(int64_t first, int64_t count, int32_t* out) const;
  // read() as a function (a loader's ReadTokens, loader.h); it shares the open file.
  std::function<void(int64_t, int64_t, int32_t*)> reader() const {
    return [split = *this](int64_t first, int64_t count, int32_t* out) {
      split.read(first, count, out);
    };
  }

  struct Impl;  // the open file and dataset (token_read.cpp)
  TokenSplitReader(std::shared_ptr<const Impl> impl, int64_t size)
      : impl_(std::move(impl)), size_(size) {}

 private:
  std::shared_ptr<const Impl> impl_;
  int64_t size_ = 0;
};

struct TokenSource : TokenFileInfo {
  TokenSplitReader train, val;
  bool scanned = false;  // every id checked when the file was opened (open_token_file)
};

// Loads `path` and checks it against the model: UsageError naming the file and the problem for a
// missing file, a non-HDF5 file, a missing /train or /val, a rank other than 1, a non-integer
// type, missing or malformed attributes, a file vocab_size above `model_vocab_size`, any token
// outside [0, vocab_size) (with its index and value), a split shorter than seq_len + 1 tokens,
// an unknown tokenizer, a SentencePiece file without a model that loads or whose piece count is
// not vocab_size.
TokenData read_token_file(const std::string& path, int64_t model_vocab_size, int64_t seq_len);

// read_token_file's checks, with the tokens left in the file. Every id is range-checked before
// training, in a pass over blocks of the file, where `scan` (the trainer: rank 0, whose refusal
// every rank takes; the others check the file's structure, attributes and sizes) and the file
// holds at most kScanTokens ids (about a second's read); every id read later is checked too
// (TokenSplitReader::read), so a larger file's bad id is refused when a window holds it.
inline constexpr int64_t kScanTokens = int64_t{1} << 27;
TokenSource open_token_file(const std::string& path, int64_t model_vocab_size, int64_t seq_len,
                            bool scan);

// What tells two token files apart, in words: "vocab_size 256, tokenizer bytes, /train 213594
// and /val 23726 tokens, content 3f1c9a20e4b5d671" (a hash of the tokenizer model and of 33
// blocks of 256 tokens spread over each split: the start, the end and evenly between). The
// trainer compares rank 0's with every rank's: a copy that differs between nodes trained other
// batches than the log said. Every rank reads the same blocks: an id outside the vocabulary there
// (a file too large to scan) is a UsageError naming the file, which every rank meets alike.
// It begins "vocab_size N,": read back from older checkpoints' /state/data (ckpt/tokenizer.cpp).
std::string token_source_fingerprint(const TokenSource& data);

}  // namespace sy
