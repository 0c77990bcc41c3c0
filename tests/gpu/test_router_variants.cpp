// The fused GPU router (kernels/cuda/router.cu) beyond the plain softmax top-k of
// test_moe_ops.cpp: group-limited (node-limited) selection, sigmoid scores and the gate scale
// against cpu::router_forward/backward (forward and backward, ties to the lower group); the aux
// loss on sigmoid scores and the logsumexp the router must store for the z-loss, against host
// loops in double written from SPEC section 1. Outputs are NaN-poisoned first, so a value the
// kernel never writes fails.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <ostream>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/cpu/moe_ops.h"
#include "kernels/cuda/buffer.h"
#include "kernels/cuda/moe_ops.h"

namespace {

namespace cpu = sy::cpu;
namespace cu = sy::cuda;
using sy::RouterRule;
using sy::cuda::to_device;
using sy::gputest::close;
using sy::gputest::download_f32;
using sy::gputest::kTolF32;
using sy::gputest::kVariants;
using sy::gputest::poisoned;
using sy::gputest::random_floats;
using sy::gputest::upload_as;
using sy::gputest::VariantCase;

// The GPU router's forward of the tokens of logits[N,E] (bias empty: none), outputs
// NaN-poisoned before the call.
struct Routed {
  std::vector<float> probs, lse, gates;
  std::vector<int32_t> topk;
};
Routed gpu_route(const std::vector<float>& logits, const std::vector<float>& bias, int E, int K,
                 const RouterRule& rule) {
  const int N = static_cast<int>(logits.size()) / E;
  auto d_logits = upload_as<float>(logits);
  auto d_bias = upload_as<float>(bias.empty() ? std::vector<float>{0.0f} : bias);
  auto d_probs = poisoned<float>(N * E), d_lse = poisoned<float>(N);
  auto d_gates = poisoned<float>(N * K);
  auto d_topk = poisoned<int32_t>(N * K);
  cu::router_forward(d_probs.data(), d_lse.data(), d_topk.data(), d_gates.data(), d_logits.data(),
                     bias.empty() ? nullptr : d_bias.data(), N, E, K, rule, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  return {download_f32(d_probs), download_f32(d_lse), download_f32(d_gates), d_topk.download()};
}

class RouterVariants : public ::testing::TestWithParam<VariantCase> {};
INSTANTIATE_TEST_SUITE_P(Rules, RouterVariants, ::testing::ValuesIn(kVariants),
                         [](const ::testing::TestParamInfo<VariantCase>& p) {
                           return std::string(p.param.name);
                         });

TEST_P(RouterVariants, ForwardBackwardMatchCpu) {
  SY_REQUIRE_GPU();
  const VariantCase& c = GetParam();
  const int N = c.N, E = c.E, K = c.K;
  // Shared with tests/margins/test_gpu_margins.cpp, which checks that no two scores these inputs
  // rank are near-ties that fp32 rounding could reorder (the top-k is compared exactly).
  const auto [logits, bias, dgates, dprobs, dlse] = sy::gputest::variant_inputs(c);
  std::vector<float> probs(N * E), lse(N), gates(N * K), dlogits(N * E);
  std::vector<int32_t> topk(N * K);
  cpu::router_forward(probs.data(), lse.data(), topk.data(), gates.data(), logits.data(),
                      c.with_bias ? bias.data() : nullptr, N, E, K, c.rule);
  const bool with_dlse = !c.rule.sigmoid;  // no z-loss (no lse gradient) under sigmoid
  cpu::router_backward(dlogits.data(), dgates.data(), dprobs.data(),
                       with_dlse ? dlse.data() : nullptr, probs.data(), topk.data(), N, E, K,
                       c.rule);

  const Routed got = gpu_route(logits, bias, E, K, c.rule);
  EXPECT_EQ(got.topk, topk);
  EXPECT_TRUE(close(got.probs, probs, kTolF32));
  EXPECT_TRUE(close(got.lse, lse, kTolF32));
  EXPECT_TRUE(close(got.gates, gates, kTolF32));

  auto d_dg = upload_as<float>(dgates), d_dp = upload_as<float>(dprobs);
  auto d_dl = upload_as<float>(dlse);
  auto d_dlogits = poisoned<float>(N * E);
  auto d_probs = upload_as<float>(probs);
  auto d_topk = to_device(topk);
  cu::router_backward(d_dlogits.data(), d_dg.data(), d_dp.data(), with_dlse ? d_dl.data() : nullptr,
                      d_probs.data(), d_topk.data(), N, E, K, c.rule, nullptr);
  EXPECT_TRUE(close(download_f32(d_dlogits), dlogits, kTolF32));
}

// Every group scores the same: the lowest M groups are kept, and inside them the lowest
// experts (E = 16 in 4 groups, M = 2, K = 3: experts 0, 1, 2); groups 1 and 2 tie above
// group 0 (z = 0,0 | 1,2 | 2,1 over 3 groups, M = 1, K = 2): group 1, experts 3 then 2.
TEST(RouterVariantsTies, LowerGroupWins) {
  SY_REQUIRE_GPU();
  EXPECT_EQ(
      gpu_route(std::vector<float>(2 * 16, 0.3f), {}, 16, 3, {.groups = 4, .groups_topk = 2}).topk,
      (std::vector<int32_t>{0, 1, 2, 0, 1, 2}));
  EXPECT_EQ(gpu_route({0, 0, 1, 2, 2, 1}, {}, 6, 2, {.groups = 3, .groups_topk = 1}).topk,
            (std::vector<int32_t>{3, 2}));
}

// The aux loss on sigmoid scores (SPEC section 1: P_i = mean of p_i / sum_j p_j) and its
// gradient, against host loops in double, both aux scopes; groups within one 1024-token chunk of
// the kernels' partial sums and across several (T = 1100), and E = 300 (more than a block).
struct SigmoidShape {
  int B, T, E;
};
class RouterSigmoidAux : public ::testing::TestWithParam<SigmoidShape> {};

TEST_P(RouterSigmoidAux, ScoresNormalisedOverAllExperts) {
  SY_REQUIRE_GPU();
  const int B = GetParam().B, T = GetParam().T, N = B * T, E = GetParam().E, K = 2;
  const double aux_coeff = 1e-2, token_weight = 1.0 / 50, group_weight = 1.0 / 4;
  std::mt19937 rng(17);
  const auto probs = random_floats(rng, N * E, 0.05f, 0.95f);  // sigmoid scores: no sum to 1
  auto lse = random_floats(rng, N, -2.0f, 3.0f);
  // No z-loss under sigmoid (SPEC section 1): the CPU never computes it, so a logsumexp that is
  // not finite (a logit of +inf, whose sigmoid score is 1) must not make it NaN. The GPU summed
  // lse^2 and scaled it by 0 (review): NaN, a "non-finite loss" the CPU does not have.
  lse[0] = std::nanf("");
  std::vector<int32_t> topk(N * K);  // two distinct experts per token, every pair in turn
  for (int n = 0; n < N; ++n) {
    topk[n * K] = n % E;
    topk[n * K + 1] = (n + 1 + (n / E) % (E - 1)) % E;
  }
  std::vector<double> S(N, 0.0);
  for (int n = 0; n < N; ++n)
    for (int i = 0; i < E; ++i) S[n] += probs[n * E + i];
  for (int NG : {T, N}) {
    const int G = N / NG;
    std::vector<double> f(G * E, 0.0);
    double aux = 0.0;
    for (int g = 0; g < G; ++g)
      for (int i = 0; i < E; ++i) {
        double P = 0.0;
        for (int n = g * NG; n < (g + 1) * NG; ++n) {
          for (int j = 0; j < K; ++j) f[g * E + i] += topk[n * K + j] == i ? 1.0 / (NG * K) : 0.0;
          P += probs[n * E + i] / S[n];
        }
        aux += aux_coeff * E * f[g * E + i] * P / NG;
      }
    std::vector<float> dprobs(N * E);
    for (int n = 0; n < N; ++n) {
      const double* fg = &f[(n / NG) * E];
      double fq = 0.0;
      for (int i = 0; i < E; ++i) fq += fg[i] * probs[n * E + i] / S[n];
      for (int i = 0; i < E; ++i)
        dprobs[n * E + i] =
            static_cast<float>(group_weight * aux_coeff * E / NG * (fg[i] - fq) / S[n]);
    }

    auto d_probs = upload_as<float>(probs), d_lse = upload_as<float>(lse);
    auto d_topk = to_device(topk);
    auto d_frac = poisoned<float>(G * E);
    auto d_scratch = poisoned<float>(cu::router_losses_scratch(N, E, NG));
    auto d_loss = poisoned<double>(2);
    cu::router_losses_forward(d_loss.data(), d_frac.data(), d_scratch.data(), d_probs.data(),
                              d_lse.data(), d_topk.data(), N, E, K, NG, aux_coeff, 0.0,
                              token_weight, group_weight, nullptr, /*sigmoid_scores=*/true);
    CUDA_CHECK(cudaDeviceSynchronize());
    const auto loss = d_loss.download();
    EXPECT_NEAR(loss[0], aux * group_weight, 1e-5 * aux * group_weight) << "NG " << NG;
    EXPECT_EQ(loss[1], 0.0);
    auto d_dprobs = poisoned<float>(N * E), d_dlse = poisoned<float>(N);
    cu::router_losses_backward(d_dprobs.data(), d_dlse.data(), d_frac.data(), d_lse.data(), N, E,
                               NG, aux_coeff, 0.0, token_weight, group_weight, nullptr,
                               d_probs.data());
    EXPECT_TRUE(close(download_f32(d_dprobs), dprobs, kTolF32)) << "NG " << NG;
  }
}
INSTANTIATE_TEST_SUITE_P(Shapes, RouterSigmoidAux,
                         ::testing::Values(SigmoidShape{3, 11, 6}, SigmoidShape{3, 1100, 6},
                                           SigmoidShape{2, 40, 300}));

// logsumexp of each row of z[N,E], in double.
std::vector<float> host_lse(const std::vector<float>& z, int N, int E) {
  std::vector<float> out(N);
  for (int n = 0; n < N; ++n) {
    double zmax = z[n * E];
    for (int i = 1; i < E; ++i) zmax = std::fmax(zmax, static_cast<double>(z[n * E + i]));
    double sum = 0.0;
    for (int i = 0; i < E; ++i) sum += std::exp(static_cast<double>(z[n * E + i]) - zmax);
    out[n] = static_cast<float>(zmax + std::log(sum));
  }
  return out;
}

// Issue 14 item 1: router_forward computed logsumexp(z) but never stored lse[n], so the z-loss,
// its gradient and dlse read uninitialised memory. lse against the host, then the z-loss and
// dlse built on the kernel's own lse (the model's path) against SPEC's z = beta * sum lse^2.
TEST(RouterLse, StoredForTheZLoss) {
  SY_REQUIRE_GPU();
  for (const int E : {13, 64}) {
    const int N = 37, K = 2;
    std::mt19937 rng(5 + E);
    const auto logits = random_floats(rng, N * E, -4.0f, 4.0f);
    const auto lse = host_lse(logits, N, E);

    const Routed got = gpu_route(logits, {}, E, K, RouterRule{});
    EXPECT_TRUE(close(got.lse, lse, kTolF32)) << "E " << E;
    auto d_probs = upload_as<float>(got.probs), d_lse = upload_as<float>(got.lse);
    auto d_topk = to_device(got.topk);

    const double z_coeff = 1e-3, token_weight = 1.0 / N;
    double z = 0.0;
    std::vector<float> dlse(N);
    for (int n = 0; n < N; ++n) {
      z += static_cast<double>(lse[n]) * lse[n];
      dlse[n] = static_cast<float>(2.0 * token_weight * z_coeff * lse[n]);
    }
    auto d_frac = poisoned<float>(E);
    auto d_scratch = poisoned<float>(cu::router_losses_scratch(N, E, N));
    auto d_loss = poisoned<double>(2);
    cu::router_losses_forward(d_loss.data(), d_frac.data(), d_scratch.data(), d_probs.data(),
                              d_lse.data(), d_topk.data(), N, E, K, N, 0.0, z_coeff, token_weight,
                              1.0, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    const double want = z_coeff * z * token_weight;
    EXPECT_NEAR(d_loss.download()[1], want, 1e-5 * want) << "E " << E;
    auto d_dprobs = poisoned<float>(N * E), d_dlse = poisoned<float>(N);
    cu::router_losses_backward(d_dprobs.data(), d_dlse.data(), d_frac.data(), d_lse.data(), N, E, N,
                               0.0, z_coeff, token_weight, 1.0, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_TRUE(close(download_f32(d_dlse), dlse, kTolF32)) << "E " << E;
  }
}

}  // namespace
