// Token files (SPEC section 8): HDF5 with one-dimensional unsigned datasets /train and /val and
// root attributes vocab_size and tokenizer. prepare_token_file() writes one from text files with
// the byte-level tokenizer; read_token_file() loads and checks one before training starts, so a
// bad file is a UsageError (exit 2) naming the file and what is wrong, never a crash mid-run.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sy {

struct PrepareOptions {
  std::vector<std::string> inputs;  // text files, concatenated in this order
  std::string output;               // the .h5 file to write
  double val_fraction = 0.1;        // the LAST fraction of EACH input goes to /val
};

struct PrepareReport {
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
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

// Byte-level tokenizer (vocab 256, tokenizer "bytes"): token = byte value. Each input i of n_i
// bytes contributes its first n_i - v_i bytes to /train and its last v_i = floor(n_i *
// val_fraction) bytes to /val, so both splits hold every file's style. Written to
// "<output>.tmp" and renamed, so a crash never leaves a half-written file under the real name.
// Throws UsageError naming the file for: no inputs, a missing/unreadable/empty input, a missing
// output directory, val_fraction outside [0, 1).
PrepareReport prepare_token_file(const PrepareOptions& opt);

struct TokenData {
  std::vector<int32_t> train, val;  // token ids, each in [0, vocab_size)
  int64_t vocab_size = 0;           // the file's vocabulary (<= the model's)
  std::string tokenizer;
};

// Loads `path` and checks it against the model: UsageError naming the file and the problem for a
// missing file, a non-HDF5 file, a missing /train or /val, a rank other than 1, a non-integer
// type, missing or malformed attributes, a file vocab_size above `model_vocab_size`, any token
// outside [0, vocab_size) (with its index and value), a split shorter than seq_len + 1 tokens.
TokenData read_token_file(const std::string& path, int64_t model_vocab_size, int64_t seq_len);

}  // namespace sy
