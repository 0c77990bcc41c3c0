// The dense CUDA ops (kernels/cuda/ops.h) against the CPU reference (kernels/cpu/ops.h) on
// random inputs, forward and backward, fp32 (1e-5) and bf16 (1e-2). Outputs are NaN-poisoned
// before each call; accumulated outputs (+=) start from a random value on both sides.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/ops.h"

namespace {

namespace cpu = sy::cpu;
namespace cu = sy::cuda;
using sy::gputest::bf16;
using sy::gputest::close;
using sy::gputest::download_f32;
using sy::gputest::poisoned;
using sy::gputest::random_floats;
using sy::gputest::random_ints;
using sy::gputest::representable;
using sy::gputest::tol;
using sy::gputest::upload_as;

// Odd sizes so partial warps and blocks are exercised.
constexpr int kB = 3, kT = 7, kC = 48, kNH = 4, kN = kB * kT, kV = 37;

template <class T>
class DenseOps : public ::testing::Test {};
using Types = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(DenseOps, Types);

TYPED_TEST(DenseOps, RmsNorm) {
  SY_REQUIRE_GPU();
  using T = TypeParam;
  std::mt19937 rng(1);
  const auto x = representable<T>(random_floats(rng, kN * kC));
  const auto g = random_floats(rng, kC, 0.5f, 1.5f);
  const auto dout = representable<T>(random_floats(rng, kN * kC));
  const auto dg0 = random_floats(rng, kC);
  const double eps = 1e-5;

  std::vector<float> out(kN * kC), rstd(kN), dx(kN * kC), dg = dg0;
  cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), g.data(), kN, kC, eps);
  cpu::rmsnorm_backward(dx.data(), dg.data(), dout.data(), x.data(), g.data(), rstd.data(), kN, kC);

  auto d_x = upload_as<T>(x), d_dout = upload_as<T>(dout);
  auto d_g = upload_as<float>(g), d_dg = upload_as<float>(dg0);
  auto d_out = poisoned<T>(kN * kC), d_dx = poisoned<T>(kN * kC);
  auto d_rstd = poisoned<float>(kN);
  cu::rmsnorm_forward(d_out.data(), d_rstd.data(), d_x.data(), d_g.data(), kN, kC, eps, nullptr);
  EXPECT_TRUE(close(download_f32(d_out), out, tol<T>()));
  EXPECT_TRUE(close(download_f32(d_rstd), rstd, tol<T>()));
  cu::rmsnorm_backward(d_dx.data(), d_dg.data(), d_dout.data(), d_x.data(), d_g.data(),
                       d_rstd.data(), kN, kC, nullptr);
  EXPECT_TRUE(close(download_f32(d_dx), dx, tol<T>()));
  EXPECT_TRUE(close(download_f32(d_dg), dg, tol<T>()));
}

}  // namespace
