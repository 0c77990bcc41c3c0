// The GPU decoder of `switchyard sample --device cuda` (src/sample/cuda_decoder.h) against the CPU
// Decoder (src/sample/decoder.h; tests/sample checks that one against the training model's full
// forward): greedy tokens equal and per-step logits within 1e-4 (the suite's normalised
// per-element error) for 40 steps past a prompt, which runs 27 steps past seq_len (the sliding
// window), for every model variant of tests/sample/decoder_cases.h; prefill and one-at-a-time
// feeding; reset. Without a usable GPU every test but the refusal reports SKIPPED. Written and
// compiled, not yet run on a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/cuda/check.h"
#include "src/core/error.h"
#include "src/sample/cuda_decoder.h"
#include "src/sample/decoder.h"
#include "src/sample/sampler.h"
#include "tests/sample/decoder_cases.h"

namespace sy {
namespace {

using gputest::close;
using test::DecoderVariant;

constexpr double kTol = 1e-4;
using test::kGreedySteps;

using test::argmax;

class CudaDecoding : public ::testing::TestWithParam<DecoderVariant> {};

// A prefill of 3 tokens, then 40 steps each feeding both decoders the CPU's argmax: the GPU's
// argmax is the same token at every step and its logits are close. Then generate() at temperature
// 0 on the GPU decoder, from a fresh state, gives those 40 tokens.
TEST_P(CudaDecoding, GreedyTokensAndLogitsEqualTheCpuDecoderPastTheWindow) {
  SY_REQUIRE_GPU();
  const DecoderVariant& v = GetParam();
  const Config cfg = test::tiny_decoder_config(v.overrides);
  const std::vector<float> p = test::decoder_weights(cfg, v.bias);
  Decoder cpu_dec(cfg, p);
  CudaDecoder gpu_dec(cfg, p);

  const std::vector<int32_t> prompt = test::greedy_prompt();
  const int n_prompt = static_cast<int>(prompt.size());
  const std::vector<float>* ref = &cpu_dec.feed(prompt.data(), n_prompt);
  const std::vector<float>* got = &gpu_dec.feed(prompt.data(), n_prompt);
  std::vector<int32_t> greedy;
  for (int step = 0; step < kGreedySteps; ++step) {
    ASSERT_TRUE(close(*got, *ref, kTol)) << v.name << " at step " << step;
    const int32_t next = argmax(*ref);
    ASSERT_EQ(argmax(*got), next) << v.name << " at step " << step;
    greedy.push_back(next);
    ref = &cpu_dec.feed(&next, 1);
    got = &gpu_dec.feed(&next, 1);
  }
  EXPECT_TRUE(close(*got, *ref, kTol)) << v.name << " after the last step";
  EXPECT_EQ(gpu_dec.position(), n_prompt + kGreedySteps);
  EXPECT_GT(gpu_dec.position(), 2 * cfg.model.seq_len);  // the window slid well past seq_len

  SampleOptions o;
  o.temperature = 0.0;
  o.tokens = kGreedySteps;
  EXPECT_EQ(test::generated_ids(gpu_dec, prompt, o, gpu_dec.vocab_size()), greedy) << v.name;
}

INSTANTIATE_TEST_SUITE_P(Variants, CudaDecoding, ::testing::ValuesIn(test::decoder_variants()),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

// A prefill of the whole window, then a block of 20 tokens past it, then reset() and a shorter
// prefill over the stale cache, then a reset and a prompt of the window and 2 kFeedBlock + 20
// more in one feed (blocks of kFeedBlock past the window, wrapping the cache of W + kFeedBlock - 1
// rows): the logits after each feed against the CPU Decoder fed the same way; with the default
// attention scratch (the prefill's queries in one group) and with room for 3 query rows (groups
// of 3, the last one short).
TEST(CudaDecoder, WindowPrefillBlocksPastItAndResetEqualTheCpuDecoder) {
  SY_REQUIRE_GPU();
  const Config cfg = test::tiny_decoder_config({"moe.shared_experts=1"});
  const std::vector<float> p = test::decoder_weights(cfg, true);
  const long NH = cfg.model.n_heads, W = cfg.model.seq_len;
  for (long scratch : {CudaDecoder::kAttentionScratchFloats, 3 * NH * W}) {
    Decoder cpu_dec(cfg, p);
    CudaDecoder gpu_dec(cfg, p, scratch);
    const int w = cpu_dec.window();
    const int more = 2 * TokenDecoder::kFeedBlock + 20;
    std::vector<int32_t> tokens(static_cast<size_t>(w + more));
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 37 + 11) % 96);

    EXPECT_TRUE(close(gpu_dec.feed(tokens.data(), w), cpu_dec.feed(tokens.data(), w), kTol))
        << "scratch " << scratch;
    EXPECT_TRUE(
        close(gpu_dec.feed(tokens.data() + w, 20), cpu_dec.feed(tokens.data() + w, 20), kTol))
        << "scratch " << scratch;
    EXPECT_EQ(gpu_dec.position(), w + 20);
    gpu_dec.reset();
    cpu_dec.reset();
    EXPECT_TRUE(close(gpu_dec.feed(tokens.data() + 7, 5), cpu_dec.feed(tokens.data() + 7, 5), kTol))
        << "scratch " << scratch;
    EXPECT_EQ(gpu_dec.position(), 5);
    // A prompt longer than the window in one feed: a prefill of w, then blocks.
    gpu_dec.reset();
    cpu_dec.reset();
    EXPECT_TRUE(
        close(gpu_dec.feed(tokens.data(), w + more), cpu_dec.feed(tokens.data(), w + more), kTol))
        << "scratch " << scratch;
    EXPECT_EQ(gpu_dec.position(), w + more);
  }
}

// Where no GPU is usable (the CPU-only CI machines): a UsageError (exit 2 in `switchyard sample`)
// that says why, never a crash in the CUDA runtime.
TEST(CudaDecoder, WithoutAUsableGpuIsAUsageErrorNamingTheReason) {
  std::string reason;
  if (cuda::device_count(&reason) > 0) GTEST_SKIP() << "a GPU is usable here";
  const Config cfg = test::tiny_decoder_config();
  const std::vector<float> p = test::decoder_weights(cfg, false);
  try {
    CudaDecoder dec(cfg, p);
    ADD_FAILURE() << "CudaDecoder constructed without a usable GPU";
  } catch (const UsageError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("needs a usable CUDA GPU"), std::string::npos) << what;
    EXPECT_NE(what.find(reason), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace sy
