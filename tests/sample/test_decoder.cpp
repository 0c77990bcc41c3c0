// Incremental decoding (src/sample): the key/value-cached decoder against the training model's
// full forward of the growing sequence (Model<float>, an independent composition of the same
// ops), greedy and seeded sampling, the sampling distribution against softmax computed here, and
// the UTF-8-aware text stream.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/core/error.h"
#include "src/model/init.h"
#include "src/model/model.h"
#include "src/sample/decoder.h"
#include "src/sample/sampler.h"
#include "tests/sample/decoder_cases.h"

namespace sy {
namespace {

using test::argmax;
using test::DecoderVariant;
using test::generated_ids;

// The logits of the last of `seq` tokens by the training model's full forward of [seq, padding]:
// causal attention and dropless per-token routing make the padding irrelevant.
std::vector<float> full_forward_logits(Model<float>& m, const Config& cfg,
                                       const std::vector<int32_t>& seq) {
  const int T = static_cast<int>(cfg.model.seq_len), C = static_cast<int>(cfg.model.d_model),
            V = static_cast<int>(cfg.model.vocab_size);
  std::vector<int32_t> tokens(static_cast<size_t>(T) + 1, 0);
  std::copy(seq.begin(), seq.end(), tokens.begin());
  m.forward(tokens.data(), 1, LossScale{});
  const float* h = m.final_hidden().data() + (seq.size() - 1) * static_cast<size_t>(C);
  const std::string head = cfg.model.tie_embeddings ? "model/embed" : "model/head";
  const float* w = m.param(head);
  std::vector<float> logits(static_cast<size_t>(V));
  for (int v = 0; v < V; ++v) {
    double s = 0.0;
    for (int c = 0; c < C; ++c) s += static_cast<double>(h[c]) * w[v * C + c];
    logits[static_cast<size_t>(v)] = static_cast<float>(s);
  }
  return logits;
}

class CachedDecoding : public ::testing::TestWithParam<DecoderVariant> {};

TEST_P(CachedDecoding, GreedyEqualsArgmaxOfTheFullForwardOfTheGrowingSequence) {
  const DecoderVariant& v = GetParam();
  const Config cfg = test::tiny_decoder_config(v.overrides);
  const std::vector<float> p = test::decoder_weights(cfg, v.bias);
  Model<float> model(cfg);
  model.params = p;
  Decoder dec(cfg, p);

  std::vector<int32_t> seq = {5, 17, 42};
  const std::vector<float>* logits = &dec.feed(seq.data(), static_cast<int>(seq.size()));
  double worst = 0.0;
  while (static_cast<int64_t>(seq.size()) < cfg.model.seq_len) {
    const std::vector<float> ref = full_forward_logits(model, cfg, seq);
    for (size_t i = 0; i < ref.size(); ++i)
      worst = std::max(worst, static_cast<double>(std::fabs((*logits)[i] - ref[i])));
    const int32_t next = argmax(ref);
    ASSERT_EQ(argmax(*logits), next) << v.name << " at length " << seq.size();
    seq.push_back(next);
    logits = &dec.feed(&next, 1);
  }
  EXPECT_LE(worst, 1e-5) << v.name;

  // The same through generate() at temperature 0 (greedy), from a fresh state.
  SampleOptions o;
  o.temperature = 0.0;
  o.tokens = cfg.model.seq_len - 3;
  EXPECT_EQ(generated_ids(dec, std::vector<int32_t>{5, 17, 42}, o, dec.vocab_size()),
            std::vector<int32_t>(seq.begin() + 3, seq.end()))
      << v.name;
}

INSTANTIATE_TEST_SUITE_P(Variants, CachedDecoding, ::testing::ValuesIn(test::decoder_variants()),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(Decoder, PrefillEqualsOneTokenAtATimeAndRunsPastTheWindow) {
  const Config cfg = test::tiny_decoder_config();
  const std::vector<float> p = test::decoder_weights(cfg, false);
  Decoder a(cfg, p), b(cfg, p);
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7};
  const std::vector<float> batched = a.feed(prompt.data(), 7);
  std::vector<float> single;
  for (int32_t t : prompt) single = b.feed(&t, 1);
  for (size_t i = 0; i < batched.size(); ++i) EXPECT_NEAR(batched[i], single[i], 1e-5) << i;

  // Past seq_len the cache is a window of the last seq_len positions: generation goes on.
  SampleOptions o;
  o.tokens = 3 * cfg.model.seq_len;
  const std::vector<int32_t> ids = generated_ids(a, prompt, o, a.vocab_size());
  EXPECT_EQ(static_cast<int64_t>(ids.size()), 3 * cfg.model.seq_len);
  EXPECT_EQ(a.position(), 7 + 3 * cfg.model.seq_len);
  for (int32_t t : ids) EXPECT_TRUE(t >= 0 && t < a.vocab_size());
}

// Past seq_len each layer attends over the last W = seq_len positions and RoPE scores depend
// only on the distance between positions. With one layer a cached key or value depends on its token
// and position alone, so the logits at position p >= W equal the training model's full forward of
// the last W tokens placed at positions 0..W-1: every window start, every wrap of the cache.
TEST(Decoder, PastTheWindowOneLayerEqualsTheFullForwardOfTheLastWindow) {
  const Config cfg = test::tiny_decoder_config({"model.n_layers=1"});
  const std::vector<float> p = test::decoder_weights(cfg, false);
  Model<float> model(cfg);
  model.params = p;
  Decoder dec(cfg, p);
  const int W = static_cast<int>(cfg.model.seq_len);
  std::vector<int32_t> seq;
  double worst = 0.0;
  for (int i = 0; i < 2 * W + 5; ++i) {
    const auto id = static_cast<int32_t>((i * 37 + 11) % dec.vocab_size());
    seq.push_back(id);
    const std::vector<float>& logits = dec.feed(&id, 1);
    if (i < W) continue;
    const std::vector<int32_t> window(seq.end() - W, seq.end());
    const std::vector<float> ref = full_forward_logits(model, cfg, window);
    for (size_t v = 0; v < ref.size(); ++v)
      worst = std::max(worst, static_cast<double>(std::fabs(logits[v] - ref[v])));
    ASSERT_LE(worst, 1e-4) << "position " << i;
  }
}

// A feed that crosses the window — a prompt longer than seq_len, from position 0 or after other
// tokens — goes through the layers as one prefill up to W, then in blocks of kFeedBlock whose
// keys wrap around the cache of W + kFeedBlock - 1 rows. With one layer its last logits are again
// the full forward of the last W tokens; with two, the tokens fed one at a time give them too,
// and generate() takes such a prompt.
TEST(Decoder, AFeedPastTheWindowIsReadThroughIt) {
  const Config one = test::tiny_decoder_config({"model.n_layers=1"});
  const std::vector<float> p1 = test::decoder_weights(one, false);
  Model<float> model(one);
  model.params = p1;
  const int W = static_cast<int>(one.model.seq_len);
  for (int before : {0, 3, W}) {
    for (int n : {W - before + 1, W + 5, 2 * W + 3, W + 3 * TokenDecoder::kFeedBlock + 3}) {
      if (n < 1) continue;
      Decoder dec(one, p1);
      std::vector<int32_t> seq;
      for (int i = 0; i < before + n; ++i)
        seq.push_back(static_cast<int32_t>((i * 29 + 5) % dec.vocab_size()));
      if (before > 0) dec.feed(seq.data(), before);
      const std::vector<float> logits = dec.feed(seq.data() + before, n);
      ASSERT_EQ(dec.position(), before + n);
      const std::vector<float> ref =
          full_forward_logits(model, one, std::vector<int32_t>(seq.end() - W, seq.end()));
      for (size_t v = 0; v < ref.size(); ++v)
        ASSERT_NEAR(logits[v], ref[v], 1e-4) << "before " << before << ", n " << n << ", v " << v;
    }
  }

  const Config cfg = test::tiny_decoder_config();
  const std::vector<float> p = test::decoder_weights(cfg, false);
  const int W2 = static_cast<int>(cfg.model.seq_len);
  std::vector<int32_t> prompt;
  for (int i = 0; i < W2 + 2 * TokenDecoder::kFeedBlock + 7; ++i)  // three blocks past W
    prompt.push_back(static_cast<int32_t>((i * 13 + 2) % 50));
  Decoder a(cfg, p), b(cfg, p);
  const std::vector<float> together = a.feed(prompt.data(), static_cast<int>(prompt.size()));
  std::vector<float> single;
  for (int32_t t : prompt) single = b.feed(&t, 1);
  for (size_t v = 0; v < single.size(); ++v) ASSERT_NEAR(together[v], single[v], 1e-5) << v;
  SampleOptions o;
  o.tokens = 4;
  o.temperature = 0.0;
  const std::vector<int32_t> ids = generated_ids(a, prompt, o, a.vocab_size());
  ASSERT_EQ(ids.size(), 4u);
  EXPECT_EQ(ids[0], argmax(single));
}

// A window of 70, longer than a block: a block's first query reads back to 63 positions before
// the block's last key, the most the cache of W + 63 rows allows (one row fewer overwrites a key
// it still reads). The logits after the window and after each block of 64 past it, three of
// them around the cache, against the same tokens fed one at a time.
TEST(Decoder, BlocksPastALongWindowEqualOneTokenAtATime) {
  const Config cfg = test::tiny_decoder_config({"model.seq_len=70"});
  const std::vector<float> p = test::decoder_weights(cfg, false);
  const int W = static_cast<int>(cfg.model.seq_len), block = TokenDecoder::kFeedBlock;
  std::vector<int32_t> seq;
  for (int i = 0; i < W + 3 * block + 5; ++i)
    seq.push_back(static_cast<int32_t>((i * 41 + 7) % 90));
  Decoder blocks(cfg, p), single(cfg, p);
  std::vector<float> one;
  for (int fed = 0; fed < static_cast<int>(seq.size());) {
    const int m = std::min(fed == 0 ? W : block, static_cast<int>(seq.size()) - fed);
    const std::vector<float> got = blocks.feed(seq.data() + fed, m);
    for (int i = fed; i < fed + m; ++i) one = single.feed(&seq[static_cast<size_t>(i)], 1);
    fed += m;
    for (size_t v = 0; v < one.size(); ++v)
      ASSERT_NEAR(got[v], one[v], 1e-5) << "after " << fed << " tokens, v " << v;
  }
}

// generate() reads a prompt longer than the window in blocks and says how far it got after each;
// the blocks give what one feed of the whole prompt gives (the greedy tokens from there on).
TEST(Sampler, ALongPromptIsReadInBlocksSayingHowFar) {
  // A window shorter than a block (the first block then runs past it) and one longer.
  for (const char* seq_len : {"model.seq_len=32", "model.seq_len=80"}) {
    SCOPED_TRACE(seq_len);
    const Config cfg = test::tiny_decoder_config({seq_len});
    const std::vector<float> p = test::decoder_weights(cfg, false);
    const int W = static_cast<int>(cfg.model.seq_len);
    std::vector<int32_t> prompt;
    for (int i = 0; i < W + 3 * TokenDecoder::kFeedBlock + 5; ++i)
      prompt.push_back(static_cast<int32_t>((i * 7 + 3) % 50));
    const auto n = static_cast<int64_t>(prompt.size());
    Decoder a(cfg, p), b(cfg, p);
    SampleOptions o;
    o.tokens = 6;
    o.temperature = 0.0;
    std::vector<int64_t> fed;
    const std::vector<int32_t> ids =
        generated_ids(a, prompt, o, a.vocab_size(), [&](int64_t done, int64_t total) {
          EXPECT_EQ(total, n);
          fed.push_back(done);
        });
    ASSERT_GE(fed.size(), 4u);
    EXPECT_EQ(fed.front(), W);
    EXPECT_EQ(fed.back(), n);
    for (size_t i = 1; i < fed.size(); ++i)
      EXPECT_EQ(fed[i] - fed[i - 1], std::min<int64_t>(TokenDecoder::kFeedBlock, n - fed[i - 1]));
    // The same prompt in one feed, then greedy by hand.
    std::vector<int32_t> want;
    const std::vector<float>* logits = &b.feed(prompt.data(), static_cast<int>(n));
    for (int i = 0; i < o.tokens; ++i) {
      want.push_back(argmax(*logits));
      logits = &b.feed(&want.back(), 1);
    }
    EXPECT_EQ(ids, want);
    // A prompt within the window: one prefill, no progress calls.
    fed.clear();
    generate(a, std::span<const int32_t>(prompt).first(static_cast<size_t>(W)), o, a.vocab_size(),
             {}, [&](int64_t done, int64_t) { fed.push_back(done); });
    EXPECT_TRUE(fed.empty());
  }
}

// What generate() returns keeps each token's time for the first kTimedTokens only (it kept
// every id and time: 12 bytes a token for the whole of a long `sample`); the count and the total
// time cover them all.
TEST(Sampler, TheResultDoesNotGrowWithTheTokens) {
  const Config cfg = test::tiny_decoder_config();
  const std::vector<float> p = test::decoder_weights(cfg, false);
  Decoder dec(cfg, p);
  SampleOptions o;
  o.tokens = GenerateResult::kTimedTokens + 200;
  int64_t seen = 0;
  const GenerateResult r =
      generate(dec, std::vector<int32_t>{3, 1, 4}, o, 40, [&](int32_t) { ++seen; });
  EXPECT_EQ(r.tokens, o.tokens);
  EXPECT_EQ(seen, o.tokens);
  EXPECT_EQ(static_cast<int64_t>(r.token_s.size()), GenerateResult::kTimedTokens);
  double first = 0.0;
  for (double s : r.token_s) first += s;
  EXPECT_GT(r.tokens_s, first);
  EXPECT_GT(r.tokens_per_s(GenerateResult::kTimedTokens), 0.0);
  EXPECT_TRUE(std::isnan(r.tokens_per_s(GenerateResult::kTimedTokens + 1)));
}

TEST(Sampler, FixedSeedGivesTheSameTokensAndVocabLimitHolds) {
  const Config cfg = test::tiny_decoder_config();
  const std::vector<float> p = test::decoder_weights(cfg, false);
  Decoder dec(cfg, p);
  SampleOptions o;
  o.tokens = 24;
  o.seed = 11;
  const std::vector<int32_t> prompt = {3, 1, 4};
  const auto r1 = generated_ids(dec, prompt, o, 40);
  const auto r2 = generated_ids(dec, prompt, o, 40);
  EXPECT_EQ(r1, r2);
  for (int32_t t : r1) EXPECT_LT(t, 40);
  o.seed = 12;
  EXPECT_NE(generated_ids(dec, prompt, o, 40), r1);
}

// The ids no text encodes to (a SentencePiece model's <unk>, <s>, </s>) are never picked: greedy
// takes the best of the others (its logits read from the decoder's own feed of the prompt), and
// near-uniform sampling (temperature 100) over many seeds never draws one.
TEST(Sampler, NeverPicksTheExcludedIds) {
  const Config cfg = test::tiny_decoder_config();
  const std::vector<float> p = test::decoder_weights(cfg, false);
  Decoder dec(cfg, p);
  const std::vector<int32_t> prompt = {3, 1, 4};
  dec.reset();
  std::vector<float> first = dec.feed(prompt.data(), 3);
  first.resize(40);
  const int32_t best = argmax(first);
  first[static_cast<size_t>(best)] = -INFINITY;
  const int32_t second = argmax(first);
  SampleOptions o;
  o.temperature = 0.0;
  o.tokens = 1;
  EXPECT_EQ(generated_ids(dec, prompt, o, 40)[0], best);
  EXPECT_EQ(generated_ids(dec, prompt, o, PickableIds(40, {best}))[0], second);

  std::vector<int32_t> never = {0, 1, 2, 5, 6, 7, 8, 9, 39};
  o.temperature = 100.0;
  o.tokens = 32;
  o.top_k = 38;  // 38 of 40 by logit: masked ids must not fill the top k
  std::vector<int> drawn(40, 0);
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    o.seed = seed;
    for (int32_t t : generated_ids(dec, prompt, o, PickableIds(40, never))) {
      ASSERT_LT(t, 40);
      ++drawn[static_cast<size_t>(t)];
    }
  }
  for (int32_t id : never) EXPECT_EQ(drawn[static_cast<size_t>(id)], 0) << "id " << id;
  int others = 0;
  for (int id = 0; id < 40; ++id) others += drawn[static_cast<size_t>(id)] > 0 ? 1 : 0;
  EXPECT_GE(others, 25);  // near uniform over the 31 others: the mask is not a narrower cut
}

// With u on a fine regular grid, the share of u that picks each id is its probability: softmax of
// logits / temperature over the top-k, cut to the top-p nucleus, computed here by hand.
TEST(Sampler, PicksWithTheSoftmaxProbabilities) {
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, 0.5f, 3.0f};
  auto freq = [&](const SampleOptions& o) {
    std::vector<double> f(logits.size(), 0.0);
    const int n = 20000;
    for (int i = 0; i < n; ++i)
      f[static_cast<size_t>(pick_token(logits, o, (i + 0.5) / n))] += 1.0 / n;
    return f;
  };
  SampleOptions o;
  o.temperature = 2.0;
  std::vector<double> want(logits.size());
  double z = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) z += want[i] = std::exp(logits[i] / 2.0);
  auto got = freq(o);
  for (size_t i = 0; i < logits.size(); ++i) EXPECT_NEAR(got[i], want[i] / z, 1e-4) << i;

  o.top_k = 2;  // ids 1 and 4 (equal logits): half each
  got = freq(o);
  EXPECT_NEAR(got[1], 0.5, 1e-4);
  EXPECT_NEAR(got[4], 0.5, 1e-4);
  o.top_k = 0;
  o.temperature = 1.0;
  o.top_p = 0.5;  // p = .35 .35 .13 .. : ids 1 and 4 reach 0.5
  got = freq(o);
  EXPECT_NEAR(got[1] + got[4], 1.0, 1e-9);
  o.top_p = 1.0;
  o.temperature = 0.0;  // greedy: the lower of the tied ids
  EXPECT_EQ(pick_token(logits, o, 0.99), 1);
  o.temperature = 1.0;
  o.top_k = 1;
  EXPECT_EQ(pick_token(logits, o, 0.99), 1);
}

// Logits from weights that are not finite, or too large: a NaN or +inf is a numerical error naming
// the id
// (a NaN made the sort's comparison no ordering: undefined behaviour), greedy or not; -inf is a
// masked id and samples as probability 0.
TEST(Sampler, NonFiniteLogitsAreANumericalErrorAndMinusInfinityIsMasked) {
  for (double t : {0.0, 1.0}) {
    SampleOptions o;
    o.temperature = t;
    for (float bad : {std::nanf(""), INFINITY}) {
      try {
        pick_token(std::vector<float>{0.f, bad, 1.f}, o, 0.5);
        ADD_FAILURE() << "accepted " << bad;
      } catch (const NumericalError& e) {
        EXPECT_NE(std::string(e.what()).find("logit for id 1"), std::string::npos) << e.what();
        // A checkpoint's values are checked finite as it is read: finite weights too large for
        // the forward pass are as likely (QA: it said "the checkpoint's weights are not finite"
        // of a file `ckpt info` had just verified).
        EXPECT_NE(std::string(e.what()).find("forward pass overflows fp32"), std::string::npos)
            << e.what();
      }
    }
    for (double u : {0.01, 0.5, 0.99})
      EXPECT_EQ(pick_token(std::vector<float>{-INFINITY, 2.f, -INFINITY}, o, u), 1);
  }
}

// The nucleus by hand, where the frequencies above cannot tell: it is the smallest prefix whose
// probability reaches top_p (a prefix at exactly top_p is the whole nucleus), and u spreads over
// the nucleus with the probabilities renormalised inside it.
TEST(Sampler, NucleusReachingTopPExactlyAndRenormalisedInside) {
  SampleOptions o;
  o.top_p = 0.5;  // two equal logits: p = (1/2, 1/2) exactly, so id 0 alone reaches 0.5
  for (double u : {0.01, 0.5, 0.99}) EXPECT_EQ(pick_token(std::vector<float>{0.f, 0.f}, o, u), 0);
  // p = (0.4, 0.4, 0.2) (logits ln 2, ln 2, 0); top_p 0.7: the nucleus {0, 1} (0.4 < 0.7 <= 0.8),
  // each picked with probability 0.4 / 0.8 = 1/2, never id 2.
  const float l2 = static_cast<float>(std::log(2.0));
  const std::vector<float> logits = {l2, l2, 0.f};
  o.top_p = 0.7;
  std::vector<int> count(3, 0);
  const int n = 1000;
  for (int i = 0; i < n; ++i) ++count[static_cast<size_t>(pick_token(logits, o, (i + 0.5) / n))];
  EXPECT_EQ(count, (std::vector<int>{n / 2, n / 2, 0}));
}

TEST(Sampler, OptionsAreChecked) {
  SampleOptions o;
  o.temperature = -1;
  EXPECT_THROW(check_sample_options(o), UsageError);
  o = {};
  o.top_p = 0;
  EXPECT_THROW(check_sample_options(o), UsageError);
  o = {};
  o.tokens = 0;
  EXPECT_THROW(check_sample_options(o), UsageError);
  o = {};
  o.top_k = -2;
  EXPECT_THROW(check_sample_options(o), UsageError);
}

TEST(TextStream, HoldsBackAnUnfinishedCharacter) {
  auto bytes = [](std::span<const int32_t> ids) {
    std::string s;
    for (int32_t i : ids) s.push_back(static_cast<char>(i));
    return s;
  };
  const std::vector<int32_t> ctx = {'a', 'b'};
  TextStream ts(bytes, ctx);
  EXPECT_EQ(ts.push('c'), "c");
  EXPECT_EQ(ts.push(0xE2), "");
  EXPECT_EQ(ts.push(0x82), "");
  EXPECT_EQ(ts.push(0xAC), "\xE2\x82\xAC");
  EXPECT_EQ(ts.push(0xC3), "");
  EXPECT_EQ(ts.flush(), "\xC3");  // the end: whatever is left
}

}  // namespace
}  // namespace sy
