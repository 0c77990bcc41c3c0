// The CUDA MoE layer (src/model/cuda_moe.h) against the CPU MoeLayer<float> on random inputs:
// output, aux and z terms, routing counts, dm and every weight gradient; with and without
// shared experts, both aux scopes, with a binding capacity limit; fp32 (1e-5 scale-relative) and
// bf16 (1e-2); and the grouped GEMMs took cuBLAS's grouped call.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "moe_test_case.h"
#include "src/model/cuda_moe.h"
#include "src/model/moe.h"

namespace {

using sy::gputest::bf16;
using sy::gputest::close;
using sy::gputest::download_f32;
using sy::gputest::poisoned;
using sy::gputest::representable;
using sy::gputest::tol;
using sy::gputest::upload_as;

using sy::gputest::MoeCase;

template <class T>
void run_case(const MoeCase& mc) {
  // Dims, weights and micro-batch shared with tests/margins/test_gpu_margins.cpp, which checks
  // that they hold no near-tie (top-k, group or capacity cut) that fp32 rounding could flip: the
  // routing counts are compared exactly.
  const sy::MoeDims d = sy::gputest::moe_case_dims(mc);
  const int B = sy::gputest::kMoeCaseB, T_ = sy::gputest::kMoeCaseT, N = B * T_, C = d.C, S = d.S;
  const sy::LossScale s{1.0 / (2 * N), 1.0 / 3};

  const sy::gputest::MoeWeightsHost wh =
      sy::gputest::random_moe_weights<T>(d, sy::gputest::kMoeCaseWeightSeed);
  const auto [m, dout] =
      sy::gputest::random_moe_batch(d, N, sy::gputest::kMoeCaseBatchSeed, &representable<T>);
  const sy::gputest::MoeReference ref = sy::gputest::cpu_moe_reference(d, wh, m, dout, B, T_, s);

  // GPU.
  sy::cuda::Stream stream;
  sy::cuda::CublasHandle cublas(stream.get());
  sy::gputest::MoeDeviceWeights<T> dw(d, wh, 0, d.E);
  auto d_m = upload_as<T>(m), d_dout = upload_as<T>(dout);
  auto d_out = poisoned<T>(N * C), d_dm = poisoned<T>(N * C);
  sy::CudaMoeLayer<T> gpu(d);
  const sy::MoeLoss gl =
      gpu.forward(d_out.data(), d_m.data(), B, T_, dw.weights(), s, stream.get(), cublas.get());
  gpu.backward(d_dm.data(), dw.grads(), d_dout.data(), d_m.data(), dw.weights(), s, stream.get(),
               cublas.get());
  stream.sync();

  EXPECT_NEAR(gl.aux, ref.loss.aux, 1e-5 * ref.loss.aux);
  EXPECT_NEAR(gl.z, ref.loss.z, 1e-5 * ref.loss.z);
  if (mc.sigmoid) {
    EXPECT_EQ(gl.z, 0.0);
  }
  const sy::MoeStats gs = gpu.stats();
  EXPECT_EQ(gs.selected, ref.stats.selected);
  EXPECT_EQ(gs.kept, ref.stats.kept);
  EXPECT_EQ(gs.dropped, ref.stats.dropped);
  if (mc.capacity_factor > 0) {
    EXPECT_GT(ref.stats.dropped, 0) << "capacity did not bind";
  }
  EXPECT_TRUE(close(download_f32(d_out), ref.out, tol<T>())) << "out";
  EXPECT_TRUE(close(download_f32(d_dm), ref.dm, tol<T>())) << "dm";
  EXPECT_TRUE(close(download_f32(dw.g_router), ref.g_router, tol<T>())) << "router";
  EXPECT_TRUE(close(download_f32(dw.g_w1), ref.g_w1, tol<T>())) << "w1";
  EXPECT_TRUE(close(download_f32(dw.g_w3), ref.g_w3, tol<T>())) << "w3";
  EXPECT_TRUE(close(download_f32(dw.g_w2), ref.g_w2, tol<T>())) << "w2";
  if (S > 0) {
    EXPECT_TRUE(close(download_f32(dw.g_sw1), ref.g_sw1, tol<T>())) << "shared w1";
    EXPECT_TRUE(close(download_f32(dw.g_sw3), ref.g_sw3, tol<T>())) << "shared w3";
    EXPECT_TRUE(close(download_f32(dw.g_sw2), ref.g_sw2, tol<T>())) << "shared w2";
  }
  // Which grouped-GEMM path ran: cuBLAS 12.5+ has the grouped call for same-type operands.
#if CUBLAS_VERSION >= 120500
  EXPECT_EQ(gpu.grouped_gemm().path(false), sy::cuda::GroupedGemm::Path::kGrouped);
#endif
}

TEST(CudaMoeLayer, MatchesCpuFp32) {
  SY_REQUIRE_GPU();
  for (const MoeCase& c : sy::gputest::moe_fp32_cases()) run_case<float>(c);
}

// Sigmoid scores with the gate scale, group-limited selection (3 groups of 2, 2 kept), and both
// together with a shared expert and a binding capacity: the whole layer, not only the kernel.
TEST(CudaMoeLayer, RouterVariantsMatchCpu) {
  SY_REQUIRE_GPU();
  for (const MoeCase& c : sy::gputest::moe_variant_cases()) {
    run_case<float>(c);
    run_case<bf16>(c);
  }
}

TEST(CudaMoeLayer, MatchesCpuBf16) {
  SY_REQUIRE_GPU();
  for (const MoeCase& c : sy::gputest::moe_bf16_cases()) run_case<bf16>(c);
}

}  // namespace

namespace {

// The layer's argument checks run on the host (no GPU needed): the shared experts' hidden is
// split over tp, the routed experts are not, so F = 100 at tp = 3 is fine without shared experts
// (as the CPU layer and moe_dims accept it) and refused with one.
TEST(CudaMoeLayerArgs, OnlySharedExpertsNeedFDivisibleByTp) {
  sy::MoeDims d{.C = 16, .E = 4, .K = 2, .F = 100, .S = 0, .L = 4, .Fl = 100, .Fs = 33};
  const sy::CudaMoeParallel par{.tp_rank = 1, .tp_size = 3};
  EXPECT_NO_THROW(sy::check_cuda_moe_args(d, par));
  d.S = 1;
  EXPECT_THROW(sy::check_cuda_moe_args(d, par), std::logic_error);
  d.F = d.Fl = 99;
  EXPECT_NO_THROW(sy::check_cuda_moe_args(d, par));
}

}  // namespace
