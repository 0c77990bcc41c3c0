// Model FLOPs per step against numbers worked out by hand (src/train/flops.h).
#include "src/train/flops.h"

#include <gtest/gtest.h>

#include <string>

#include "src/config/config.h"

namespace sy {
namespace {

// configs/small.yaml's model: C=128, L=4, T=128, E=8, K=2, F=256, V=256, GB=16.
Config small_like() {
  return parse_config(R"(
model: {vocab_size: 256, d_model: 128, n_layers: 4, n_heads: 4, seq_len: 128}
moe: {num_experts: 8, top_k: 2, ffn_hidden: 256}
train: {global_batch: 16, micro_batch: 8}
data: {path: x.h5}
)");
}

TEST(Flops, SmallConfigByHand) {
  const StepFlops f = step_flops(small_like());
  // Per layer: wqkv 3*128^2 = 49152, wo 16384, router 128*8 = 1024,
  // 2 experts * 3 matrices * 128*256 = 196608  -> 263168; 4 layers = 1052672; head 256*128 = 32768.
  EXPECT_DOUBLE_EQ(f.matmul_params_per_token, 1085440.0);
  // 6 * 1085440 * (16 * 128 tokens)
  EXPECT_DOUBLE_EQ(f.matmul, 13337886720.0);
  // 6 * 4 layers * 128^2 * 128 * 16 sequences
  EXPECT_DOUBLE_EQ(f.attention, 805306368.0);
  EXPECT_DOUBLE_EQ(f.total(), 14143193088.0);
}

TEST(Flops, SharedExpertsCountLikeRoutedOnes) {
  // One shared expert adds 3*C*F per layer per token, exactly like raising top_k by one.
  Config shared = small_like();
  shared.moe.shared_experts = 1;
  Config k3 = small_like();
  k3.moe.top_k = 3;
  EXPECT_DOUBLE_EQ(step_flops(shared).matmul_params_per_token,
                   1085440.0 + 4.0 * 3.0 * 128.0 * 256.0);
  EXPECT_DOUBLE_EQ(step_flops(shared).matmul, step_flops(k3).matmul);
}

TEST(Flops, ScalesWithSequencesAndIgnoresTyingAndExpertCountBeyondRouter) {
  const Config c = small_like();
  EXPECT_DOUBLE_EQ(model_flops(c, 32).total(), 2.0 * model_flops(c, 16).total());
  Config untied = c;
  untied.model.tie_embeddings = false;
  EXPECT_DOUBLE_EQ(step_flops(untied).total(), step_flops(c).total());
  // Doubling E only grows the router (C more params per layer per token): sparse work is K-bound.
  Config e16 = c;
  e16.moe.num_experts = 16;
  EXPECT_DOUBLE_EQ(step_flops(e16).matmul_params_per_token, 1085440.0 + 4.0 * 128.0 * 8.0);
}

TEST(Flops, FormulaNamesTheTermsAndTheTotal) {
  const std::string s = flops_formula(small_like());
  EXPECT_NE(s.find("6*P_tok*GB*T"), std::string::npos) << s;
  EXPECT_NE(s.find("6*L*T^2*C*GB"), std::string::npos) << s;
  EXPECT_NE(s.find("1085440"), std::string::npos) << s;
  EXPECT_NE(s.find("1.414e+10"), std::string::npos) << s;
}

}  // namespace
}  // namespace sy
