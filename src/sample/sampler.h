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

// The id picked from logits[0 .. logits.size()) given u in (0, 1) (ignored when greedy).
int32_t pick_token(std::span<const float> logits, const SampleOptions& o, double u);

// The u01 draw of generated token `index` (0-based) for `seed`: Philox4x32-10 block `index`.
double sample_uniform(uint64_t seed, int64_t index);

struct GenerateResult {
  std::vector<int32_t> tokens;            // the generated ids (the prompt not included)
  double prefill_s = 0.0;                 // feeding the prompt
  std::vector<double> token_s;            // [tokens] seconds to pick and feed each generated token
  double tokens_per_s(int64_t at) const;  // over the 64 tokens ending at token `at` (1-based);
                                          // NaN when fewer than `at` were generated
};

// Feeds `prompt` (1 .. window() tokens) to a fresh decoder state and generates o.tokens ids below
// `vocab_limit` (the tokenizer's vocabulary, which may be smaller than the model's), calling
// on_token(id) after each.
GenerateResult generate(TokenDecoder& dec, std::span<const int32_t> prompt, const SampleOptions& o,
                        int vocab_limit, const std::function<void(int32_t)>& on_token = {});

// Streams decoded text: given the ids so far, returns the text not yet emitted, holding back an
// incomplete UTF-8 character at the end (a piece or byte that a later token completes). The ids
// are decoded after the `context` (the prompt), whose own text counts as emitted, so that a
// piece reads as it does in context (SentencePiece drops the leading space of a text's first
// piece).
class TextStream {
 public:
  TextStream(std::function<std::string(std::span<const int32_t>)> decode,
             std::span<const int32_t> context);
  // The new text after `id` (ids accumulate).
  std::string push(int32_t id);
  // Whatever is left (call at the end).
  std::string flush();

 private:
  std::function<std::string(std::span<const int32_t>)> decode_;
  std::vector<int32_t> ids_;
  size_t emitted_ = 0;
};

}  // namespace sy
