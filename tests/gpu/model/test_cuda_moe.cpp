// The CUDA MoE layer (src/model/cuda_moe.h) against the CPU MoeLayer<float> on random inputs:
// output, aux and z terms, routing counts, dm and every weight gradient; with and without
// shared experts, both aux scopes, with a binding capacity limit; fp32 (1e-5 scale-relative) and
// bf16 (1e-2).
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "src/model/cuda_moe.h"
#include "src/model/moe.h"

namespace {

using sy::gputest::bf16;
using sy::gputest::close;
using sy::gputest::download_f32;
using sy::gputest::poisoned;
using sy::gputest::random_floats;
using sy::gputest::representable;
using sy::gputest::tol;
using sy::gputest::upload_as;

struct MoeCase {
  int S;
  sy::AuxScope scope;
  double capacity_factor = 0.0;  // 0: dropless
};

template <class T>
void run_case(const MoeCase& mc) {
  const int B = 2, T_ = 9, N = B * T_, C = 32, E = 6, K = 2, F = 24, S = mc.S;
  sy::MoeDims d;
  d.C = C;
  d.E = E;
  d.K = K;
  d.F = F;
  d.S = S;
  d.norm_topk = true;
  d.aux_coeff = 1e-2;
  d.z_coeff = 1e-3;
  d.aux_scope = mc.scope;
  d.has_capacity = mc.capacity_factor > 0;
  d.capacity_factor = mc.capacity_factor;
  const sy::LossScale s{1.0 / (2 * N), 1.0 / 3};

  std::mt19937 rng(31);
  // Weights as the GPU sees them (rounded to T), so both sides use the same values.
  const auto router = representable<T>(random_floats(rng, C * E, -0.5f, 0.5f));
  const auto bias = random_floats(rng, E, -0.01f, 0.01f);
  const auto w1 = representable<T>(random_floats(rng, E * C * F, -0.2f, 0.2f));
  const auto w3 = representable<T>(random_floats(rng, E * C * F, -0.2f, 0.2f));
  const auto w2 = representable<T>(random_floats(rng, E * F * C, -0.2f, 0.2f));
  const auto sw1 = representable<T>(random_floats(rng, S * C * F + 1, -0.2f, 0.2f));
  const auto sw3 = representable<T>(random_floats(rng, S * C * F + 1, -0.2f, 0.2f));
  const auto sw2 = representable<T>(random_floats(rng, S * F * C + 1, -0.2f, 0.2f));
  const auto m = representable<T>(random_floats(rng, N * C));
  const auto dout = representable<T>(random_floats(rng, N * C));

  // CPU reference.
  auto cw = [](const std::vector<float>& v) { return const_cast<float*>(v.data()); };
  sy::MoeWeights<float> w{cw(router),
                          cw(bias),
                          cw(w1),
                          cw(w3),
                          cw(w2),
                          S ? cw(sw1) : nullptr,
                          S ? cw(sw3) : nullptr,
                          S ? cw(sw2) : nullptr};
  std::vector<float> g_router(C * E), g_w1(E * C * F), g_w3(E * C * F), g_w2(E * F * C);
  std::vector<float> g_sw1(S * C * F + 1), g_sw3(S * C * F + 1), g_sw2(S * F * C + 1);
  sy::MoeWeights<float> g{g_router.data(), nullptr,      g_w1.data(),  g_w3.data(),
                          g_w2.data(),     g_sw1.data(), g_sw3.data(), g_sw2.data()};
  sy::MoeLayer<float> cpu(d);
  std::vector<float> out(N * C), dm(N * C);
  sy::MoeStats stats;
  const sy::MoeLoss loss = cpu.forward(out.data(), m.data(), B, T_, w, s, &stats);
  cpu.backward(dm.data(), g, dout.data(), m.data(), w, s);

  // GPU.
  sy::cuda::Stream stream;
  sy::cuda::CublasHandle cublas(stream.get());
  auto d_router = upload_as<T>(router), d_w1 = upload_as<T>(w1), d_w3 = upload_as<T>(w3);
  auto d_w2 = upload_as<T>(w2), d_sw1 = upload_as<T>(sw1), d_sw3 = upload_as<T>(sw3);
  auto d_sw2 = upload_as<T>(sw2);
  auto d_bias = upload_as<float>(bias);
  auto d_m = upload_as<T>(m), d_dout = upload_as<T>(dout);
  auto zeros = [](size_t n) { return upload_as<float>(std::vector<float>(n, 0.0f)); };
  auto dg_router = zeros(C * E), dg_w1 = zeros(E * C * F), dg_w3 = zeros(E * C * F);
  auto dg_w2 = zeros(E * F * C), dg_sw1 = zeros(S * C * F + 1), dg_sw3 = zeros(S * C * F + 1);
  auto dg_sw2 = zeros(S * F * C + 1);
  sy::CudaMoeWeights<T> gw{d_router.data(),
                           d_bias.data(),
                           d_w1.data(),
                           d_w3.data(),
                           d_w2.data(),
                           S ? d_sw1.data() : nullptr,
                           S ? d_sw3.data() : nullptr,
                           S ? d_sw2.data() : nullptr};
  sy::CudaMoeGrads gg{dg_router.data(), dg_w1.data(),  dg_w3.data(), dg_w2.data(),
                      dg_sw1.data(),    dg_sw3.data(), dg_sw2.data()};
  auto d_out = poisoned<T>(N * C), d_dm = poisoned<T>(N * C);
  sy::CudaMoeLayer<T> gpu(d);
  const sy::MoeLoss gl =
      gpu.forward(d_out.data(), d_m.data(), B, T_, gw, s, stream.get(), cublas.get());
  gpu.backward(d_dm.data(), gg, d_dout.data(), d_m.data(), gw, s, stream.get(), cublas.get());
  stream.sync();

  EXPECT_NEAR(gl.aux, loss.aux, 1e-5 * loss.aux);
  EXPECT_NEAR(gl.z, loss.z, 1e-5 * loss.z);
  const sy::MoeStats gs = gpu.stats();
  EXPECT_EQ(gs.selected, stats.selected);
  EXPECT_EQ(gs.kept, stats.kept);
  EXPECT_EQ(gs.dropped, stats.dropped);
  if (mc.capacity_factor > 0) {
    EXPECT_GT(stats.dropped, 0) << "capacity did not bind";
  }
  EXPECT_TRUE(close(download_f32(d_out), out, tol<T>())) << "out";
  EXPECT_TRUE(close(download_f32(d_dm), dm, tol<T>())) << "dm";
  EXPECT_TRUE(close(download_f32(dg_router), g_router, tol<T>())) << "router";
  EXPECT_TRUE(close(download_f32(dg_w1), g_w1, tol<T>())) << "w1";
  EXPECT_TRUE(close(download_f32(dg_w3), g_w3, tol<T>())) << "w3";
  EXPECT_TRUE(close(download_f32(dg_w2), g_w2, tol<T>())) << "w2";
  if (S > 0) {
    EXPECT_TRUE(close(download_f32(dg_sw1), g_sw1, tol<T>())) << "shared w1";
    EXPECT_TRUE(close(download_f32(dg_sw3), g_sw3, tol<T>())) << "shared w3";
    EXPECT_TRUE(close(download_f32(dg_sw2), g_sw2, tol<T>())) << "shared w2";
  }
}

TEST(CudaMoeLayer, MatchesCpuFp32) {
  SY_REQUIRE_GPU();
  run_case<float>({0, sy::AuxScope::kSequence});
  run_case<float>({1, sy::AuxScope::kMicroBatch});
  run_case<float>({0, sy::AuxScope::kSequence, 0.75});  // capacity drops assignments
}

TEST(CudaMoeLayer, MatchesCpuBf16) {
  SY_REQUIRE_GPU();
  run_case<bf16>({0, sy::AuxScope::kSequence});
  run_case<bf16>({2, sy::AuxScope::kMicroBatch});
  run_case<bf16>({1, sy::AuxScope::kSequence, 0.75});
}

}  // namespace
