// Incremental decoding of SPEC section 1's model on one CPU process, with a key/value cache: each
// new token runs the model's own building blocks (kernels/cpu ops, MoeLayer) on that token only
// and attends over the cached keys and values of the tokens before it, so the cost of a token
// does not grow with the text already generated beyond that attention.
//
// Routing is the training routing without capacity dropping (MoeLayer with has_capacity = false:
// there is no micro-batch to share experts with); the router bias b enters the selection, not
// the gates, as in training.
//
// Context: each layer attends over the last W = model.seq_len positions. Up to W tokens this is
// exactly the model's causal forward; past W it is a sliding window (RoPE scores depend only on
// the distance between positions, so every distance the window sees is one the model was trained
// on). The cache keeps W + kFeedBlock - 1 positions, so that a block of kFeedBlock tokens fed
// past the window can store its keys before attending without overwriting one its first query
// still reads.
//
// Letters: C d_model, NH heads, HD = C/NH, V vocab, W the attention window, n tokens fed at once.
//
// The GPU decoder (src/sample/cuda_decoder.h, CUDA build) has the same semantics; both are a
// TokenDecoder, which is what generate() drives.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "src/config/config.h"
#include "src/core/error.h"
#include "src/model/moe.h"
#include "src/model/params.h"

namespace sy {

// The MoE dims of the one-rank model with inference routing: dropless (no micro-batch to share
// the experts with), every other rule (scores, gate scale, groups, norm_topk) as in training.
inline MoeDims inference_moe_dims(const Config& cfg) {
  MoeDims d = moe_dims(cfg);
  d.has_capacity = false;
  return d;
}

// A model fed one token (or a prompt) at a time, keeping its key/value cache: the CPU Decoder
// below and the GPU one (cuda_decoder.h) differ only in forward().
class TokenDecoder {
 public:
  virtual ~TokenDecoder() = default;
  int vocab_size() const { return V_; }
  int window() const { return W_; }
  // Tokens fed past the window go through the layers this many at a time.
  static constexpr int kFeedBlock = 64;
  // Positions the cache holds (position s in row s % cache_rows()).
  int cache_rows() const { return W_ + kFeedBlock - 1; }
  int64_t position() const { return pos_; }  // tokens fed so far

  // Forgets every token fed (position 0).
  void reset() { pos_ = 0; }
  // Feeds tokens[n] (n >= 1) at positions position() .. position()+n-1. Returns the logits [V] of
  // the last one (valid until the next call). The tokens that still fit the window go through the
  // layers together (a prefill); those past it in blocks of kFeedBlock, each token over the last
  // W positions. after_block(fed), when given, is called after each block with the tokens of
  // this call fed so far.
  const std::vector<float>& feed(const int32_t* tokens, int n,
                                 const std::function<void(int)>& after_block = {}) {
    SY_CHECK(n >= 1, "decoder: feed of " << n << " tokens");
    for (int i = 0; i < n; ++i)
      SY_CHECK(tokens[i] >= 0 && tokens[i] < V_,
               "decoder: token " << tokens[i] << " outside the vocabulary of " << V_);
    // A block writes all its keys before attending. Inside the window nothing is overwritten;
    // past it a block of m <= kFeedBlock overwrites positions up to pos + m - 1 - cache_rows(),
    // all before pos - W + 1, the first its first query reads.
    for (int i = 0; i < n;) {
      const int64_t room = pos_ < W_ ? W_ - pos_ : kFeedBlock;
      const int m = static_cast<int>(std::min<int64_t>(n - i, room));
      SY_CHECK(pos_ + m <= W_ || m <= cache_rows() - W_ + 1,
               "decoder: a block of " << m << " at position " << pos_
                                      << " would overwrite keys it reads");
      forward(tokens + i, m);
      pos_ += m;
      i += m;
      if (after_block) after_block(i);
    }
    return logits_;
  }

 protected:
  TokenDecoder(int vocab, int window)
      : V_(vocab), W_(window), logits_(static_cast<size_t>(vocab)) {}
  // The layers for n tokens at positions pos_ .. pos_+n-1 (pos_ + n <= W, or n <= kFeedBlock):
  // their keys and values into the cache, logits_ (=) the logits of the last one.
  virtual void forward(const int32_t* tokens, int n) = 0;

  const int V_, W_;
  int64_t pos_ = 0;
  std::vector<float> logits_;  // [V]
};

class Decoder final : public TokenDecoder {
 public:
  // params: every parameter whole, laid out as make_param_table(cfg) (one rank) lays them out.
  Decoder(const Config& cfg, std::vector<float> params);

  const ParamTable& table() const { return table_; }

 private:
  float* param(const std::string& name);
  void forward(const int32_t* tokens, int n) override;

  Config cfg_;
  ParamTable table_;
  std::vector<float> params_;
  int L_, C_, NH_;
  std::vector<MoeLayer<float>> moe_;
  std::vector<std::vector<float>> kcache_, vcache_;  // per layer [cache_rows(), C]: position s
                                                     // in row s % cache_rows()
  // Activations of the tokens being fed (grown to the largest n seen).
  std::vector<float> x_, a_, rstd_, qkv_, qkv_rot_, atty_, moe_out_, scratch_;
};

}  // namespace sy
