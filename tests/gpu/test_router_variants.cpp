// The fused GPU router (kernels/cuda/router.cu) beyond the plain softmax top-k of
// test_moe_ops.cpp: the logsumexp it must store for the z-loss, against host loops in double
// written from SPEC section 1. Outputs are NaN-poisoned first, so a value the kernel never
// writes fails.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/cuda/buffer.h"
#include "kernels/cuda/moe_ops.h"

namespace {

namespace cu = sy::cuda;
using sy::gputest::close;
using sy::gputest::download_f32;
using sy::gputest::kTolF32;
using sy::gputest::poisoned;
using sy::gputest::random_floats;
using sy::gputest::upload_as;

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

    auto d_logits = upload_as<float>(logits);
    auto d_probs = poisoned<float>(N * E), d_lse = poisoned<float>(N);
    auto d_gates = poisoned<float>(N * K);
    auto d_topk = poisoned<int32_t>(N * K);
    cu::router_forward(d_probs.data(), d_lse.data(), d_topk.data(), d_gates.data(), d_logits.data(),
                       nullptr, N, E, K, true, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_TRUE(close(download_f32(d_lse), lse, kTolF32)) << "E " << E;

    const double z_coeff = 1e-3, token_weight = 1.0 / N;
    double z = 0.0;
    std::vector<float> dlse(N);
    for (int n = 0; n < N; ++n) {
      z += static_cast<double>(lse[n]) * lse[n];
      dlse[n] = static_cast<float>(2.0 * token_weight * z_coeff * lse[n]);
    }
    auto d_frac = poisoned<float>(E), d_scratch = poisoned<float>(E + N);
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
