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
using sy::gputest::random_floats;
using sy::gputest::representable;
using sy::gputest::tol;
using sy::gputest::upload_as;

struct MoeCase {
  int S;
  sy::AuxScope scope;
  double capacity_factor = 0.0;  // 0: dropless
  // The router's rule beyond softmax top-k (SPEC section 1): sigmoid scores (no z-loss), the gate
  // scale, group-limited selection (E = 6 experts in route_groups groups, route_groups_topk kept).
  bool sigmoid = false;
  double gate_scale = 1.0;
  int route_groups = 1, route_groups_topk = 1;
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
  d.z_coeff = mc.sigmoid ? 0.0 : 1e-3;
  d.aux_scope = mc.scope;
  d.score = mc.sigmoid ? sy::Score::kSigmoid : sy::Score::kSoftmax;
  d.gate_scale = mc.gate_scale;
  d.route_groups = mc.route_groups;
  d.route_groups_topk = mc.route_groups_topk;
  d.has_capacity = mc.capacity_factor > 0;
  d.capacity_factor = mc.capacity_factor;
  const sy::LossScale s{1.0 / (2 * N), 1.0 / 3};

  const sy::gputest::MoeWeightsHost wh = sy::gputest::random_moe_weights<T>(d, 31);
  std::mt19937 rng(32);
  const auto m = representable<T>(random_floats(rng, N * C));
  const auto dout = representable<T>(random_floats(rng, N * C));
  const sy::gputest::MoeReference ref = sy::gputest::cpu_moe_reference(d, wh, m, dout, B, T_, s);

  // GPU.
  sy::cuda::Stream stream;
  sy::cuda::CublasHandle cublas(stream.get());
  sy::gputest::MoeDeviceWeights<T> dw(d, wh, 0, E);
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
  run_case<float>({0, sy::AuxScope::kSequence});
  run_case<float>({1, sy::AuxScope::kMicroBatch});
  run_case<float>({0, sy::AuxScope::kSequence, 0.75});  // capacity drops assignments
}

// Sigmoid scores with the gate scale, group-limited selection (3 groups of 2, 2 kept), and both
// together with a shared expert and a binding capacity: the whole layer, not only the kernel.
TEST(CudaMoeLayer, RouterVariantsMatchCpu) {
  SY_REQUIRE_GPU();
  MoeCase sig{0, sy::AuxScope::kSequence};
  sig.sigmoid = true;
  sig.gate_scale = 2.5;
  MoeCase groups{0, sy::AuxScope::kMicroBatch};
  groups.route_groups = 3;
  groups.route_groups_topk = 2;
  MoeCase both{1, sy::AuxScope::kSequence, 0.75};
  both.sigmoid = true;
  both.gate_scale = 2.5;
  both.route_groups = 3;
  both.route_groups_topk = 2;
  for (const MoeCase& c : {sig, groups, both}) {
    run_case<float>(c);
    run_case<bf16>(c);
  }
}

TEST(CudaMoeLayer, MatchesCpuBf16) {
  SY_REQUIRE_GPU();
  run_case<bf16>({0, sy::AuxScope::kSequence});
  run_case<bf16>({2, sy::AuxScope::kMicroBatch});
  run_case<bf16>({1, sy::AuxScope::kSequence, 0.75});
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
