// Text generation: a prompt into the Decoder, then one token at a time picked from the logits
// (greedy at temperature 0; otherwise softmax(logits / temperature) restricted to the top-k and
// the top-p nucleus), with a counter-based random stream, so a seed gives the same text on any
// machine and run.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "src/sample/decoder.h"

namespace sy {

struct SampleOptions {
  int64_t tokens = 256;      // tokens to generate
  double temperature = 1.0;  // 0: greedy (argmax, ties to the lower id)
  int64_t top_k = 0;         // > 0: only the k most likely ids
  double top_p = 1.0;        // < 1: only the smallest set of ids whose probability reaches it
  uint64_t seed = 1234;
};

// UsageError naming the option (--tokens, --temperature, --top-k, --top-p) when out of range.
void check_sample_options(const SampleOptions& o);

// The id picked from logits[0 .. logits.size()) given u in (0, 1) (ignored when greedy). Throws
// NumericalError (exit 3) for a NaN or +inf logit.
int32_t pick_token(std::span<const float> logits, const SampleOptions& o, double u);

// The u01 draw of generated token `index` (0-based) for `seed`: Philox4x32-10 block `index`.
double sample_uniform(uint64_t seed, int64_t index);

// What generate() measured. Its size does not grow with the tokens generated (a run of 10^8
// tokens kept every id and every token's time: 1.2 GB); on_token sees each id.
struct GenerateResult {
  static constexpr int64_t kTimedTokens = 1024;  // the tokens whose own times are kept
  int64_t tokens = 0;                            // generated (the prompt not included)
  double prefill_s = 0.0;       // feeding the prompt (its prefill, and past the window its blocks)
  double tokens_s = 0.0;        // picking and feeding the generated tokens, all of them
  std::vector<double> token_s;  // [min(tokens, kTimedTokens)] seconds of each of the first ones
  double tokens_per_s(int64_t at) const;  // over the 64 tokens ending at token `at` (1-based,
                                          // <= kTimedTokens); NaN when fewer were generated
};

// The ids generate() may pick: those below `limit` (the tokenizer's vocabulary, which may be
// smaller than the model's) except `never` (Tokenizer::never_encoded_ids(): SentencePiece's
// control and unknown pieces, which no token file holds; a barely trained model still gives them
// some probability, and they print as " ⁇ " or nothing).
struct PickableIds {
  PickableIds(int limit_ids, std::vector<int32_t> never_ids = {})  // NOLINT: an int is a limit
      : limit(limit_ids), never(std::move(never_ids)) {}
  int limit;
  std::vector<int32_t> never;
};

// Feeds `prompt` (>= 1 tokens; past window() through the sliding window, as generated tokens are)
// to a fresh decoder state and generates o.tokens ids among `pickable`, calling on_token(id) after
// each. A prompt longer than the window calls on_prompt(fed, prompt.size()) after each of the
// decoder's blocks (its first window, then TokenDecoder::kFeedBlock tokens at a time).
GenerateResult generate(TokenDecoder& dec, std::span<const int32_t> prompt, const SampleOptions& o,
                        const PickableIds& pickable,
                        const std::function<void(int32_t)>& on_token = {},
                        const std::function<void(int64_t, int64_t)>& on_prompt = {});

// Streams decoded text, incrementally (the scheme of Hugging Face's TextStreamer and vLLM's
// detokenizer): each push decodes only a short window of the last ids, twice — ids[prefix, read)
// and ids[prefix, end) — and emits what the second adds to the first, so the work per token does
// not grow with the text already generated. Both decodes start at the same token, so a piece reads
// as it does in context (SentencePiece drops the leading space of a text's first piece: of both).
// While the decoded text ends in an incomplete UTF-8 character — an unfinished multi-byte sequence
// (byte tokenizer), or U+FFFD, which SentencePiece writes for each byte of one (byte-fallback
// pieces) — the new ids are held until a later token completes it. Such a character is at most 4
// byte tokens, so kMaxHeld = 3 ids are held: past that, the ids up to the last place at least 3
// back where the text splits (the text of the ids before it, then that of those after, is the
// text of all; not inside a character) are emitted as they decode (an invalid byte sequence, or
// a real U+FFFD, cannot stall the output: at most a character's 4 ids more are held).
// The context (the prompt) comes first; context_text() is its text, to be printed before the
// stream (it leaves out a character the context leaves unfinished: the stream emits it).
class TextStream {
 public:
  using DecodeFn = std::function<std::string(std::span<const int32_t>)>;
  static constexpr size_t kMaxHeld = 3;

  TextStream(DecodeFn decode, std::span<const int32_t> context);
  // The text of the context, up to its last complete character.
  const std::string& context_text() const { return context_text_; }
  // The new text after `id`.
  std::string push(int32_t id);
  // Whatever is held (call at the end).
  std::string flush();
  // The ids it keeps: those from the window's start on (those before it are let go once there
  // are kDropAt of them), so a stream's memory does not grow with its length.
  size_t kept_ids() const { return ids_.size(); }
  static constexpr size_t kDropAt = 4096;

 private:
  // ids_[prefix_, read_) is the window already emitted; ids_[read_, end) the ids held.
  std::string decode(size_t begin, size_t end) const;
  // Whether the text of ids [from, end) is that of [from, b) then that of [b, end).
  bool splits_at(size_t from, size_t b, size_t end) const;
  // Emits decode(prefix_, end) past decode(prefix_, read_) and moves the window to [read_, end).
  std::string emit(size_t end, const std::string& prefix_text, const std::string& text);

  DecodeFn decode_;
  std::vector<int32_t> ids_;
  size_t prefix_ = 0;
  size_t read_ = 0;
  std::string context_text_;
};

}  // namespace sy
