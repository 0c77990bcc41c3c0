// The dense CUDA ops (kernels/cuda/ops.h) against the CPU reference (kernels/cpu/ops.h) on
// random inputs, forward and backward, fp32 (1e-5) and bf16 (1e-2). Outputs are NaN-poisoned
// before each call; accumulated outputs (+=) start from a random value on both sides.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/buffer.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops.h"
#include "tests/common/naive_attention.h"

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

template <class T>
void rmsnorm_matches_cpu(int N, int C) {
  SCOPED_TRACE("N " + std::to_string(N));
  std::mt19937 rng(1);
  const auto x = representable<T>(random_floats(rng, N * C));
  const auto g = random_floats(rng, C, 0.5f, 1.5f);
  const auto dout = representable<T>(random_floats(rng, N * C));
  const auto dg0 = random_floats(rng, C);
  const double eps = 1e-5;

  std::vector<float> out(N * C), rstd(N), dx(N * C), dg = dg0;
  cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), g.data(), N, C, eps);
  cpu::rmsnorm_backward(dx.data(), dg.data(), dout.data(), x.data(), g.data(), rstd.data(), N, C);

  auto d_x = upload_as<T>(x), d_dout = upload_as<T>(dout);
  auto d_g = upload_as<float>(g), d_dg = upload_as<float>(dg0);
  auto d_out = poisoned<T>(N * C), d_dx = poisoned<T>(N * C);
  auto d_rstd = poisoned<float>(N);
  auto d_scratch = poisoned<float>(cu::rmsnorm_backward_scratch(N, C));
  cu::rmsnorm_forward(d_out.data(), d_rstd.data(), d_x.data(), d_g.data(), N, C, eps, nullptr);
  EXPECT_TRUE(close(download_f32(d_out), out, tol<T>()));
  EXPECT_TRUE(close(download_f32(d_rstd), rstd, tol<T>()));
  cu::rmsnorm_backward(d_dx.data(), d_dg.data(), d_dout.data(), d_x.data(), d_g.data(),
                       d_rstd.data(), N, C, d_scratch.data(), nullptr);
  EXPECT_TRUE(close(download_f32(d_dx), dx, tol<T>()));
  EXPECT_TRUE(close(download_f32(d_dg), dg, tol<T>()));
}

// The small shapes, and 2500 rows: the gain gradient's partial sums over three row chunks (the
// last one partial) and two column blocks (the last one partial).
TYPED_TEST(DenseOps, RmsNorm) {
  SY_REQUIRE_GPU();
  rmsnorm_matches_cpu<TypeParam>(kN, kC);
  rmsnorm_matches_cpu<TypeParam>(2500, kC);
}

TYPED_TEST(DenseOps, Embedding) {
  SY_REQUIRE_GPU();
  using T = TypeParam;
  std::mt19937 rng(2);
  auto tokens = random_ints(rng, kN, kV);
  tokens[5] = tokens[1] = tokens[9];  // repeated tokens collide in the backward
  const auto emb = random_floats(rng, kV * kC);
  const auto dout = representable<T>(random_floats(rng, kN * kC));
  const auto demb0 = random_floats(rng, kV * kC);
  std::vector<float> out(kN * kC), demb = demb0;
  cpu::embedding_forward(out.data(), tokens.data(), emb.data(), kN, kC);
  cpu::embedding_backward(demb.data(), dout.data(), tokens.data(), kN, kC);

  auto d_tok = sy::cuda::to_device(tokens);
  auto d_emb = upload_as<float>(emb), d_demb = upload_as<float>(demb0);
  auto d_dout = upload_as<T>(dout);
  auto d_out = poisoned<T>(kN * kC);
  cu::embedding_forward(d_out.data(), d_tok.data(), d_emb.data(), kN, kC, nullptr);
  // bf16 output: the table values rounded once, so compare with the rounded reference.
  EXPECT_TRUE(close(download_f32(d_out), representable<T>(out), tol<T>()));
  cu::EmbeddingBackward backward;
  backward.run(d_demb.data(), d_dout.data(), d_tok.data(), kN, kC, nullptr);
  // The CPU's additions in the CPU's order, on values exact in both types: the same bits.
  EXPECT_EQ(download_f32(d_demb), demb);
}

// Long runs of one token (a byte-level text's spaces): 3000 tokens of 5 ids, one of them 40 % of
// the tokens, and a second call on fewer tokens through the same scratch; bit for bit the CPU's.
TYPED_TEST(DenseOps, EmbeddingBackwardLongRuns) {
  SY_REQUIRE_GPU();
  using T = TypeParam;
  std::mt19937 rng(12);
  const int N = 3000, C = 67, V = 5;
  std::vector<int32_t> tokens(N);
  for (int n = 0; n < N; ++n) tokens[n] = n % 5 < 2 ? 3 : static_cast<int32_t>(rng() % V);
  const auto dout = representable<T>(random_floats(rng, N * C));
  std::vector<float> demb = random_floats(rng, V * C);
  auto d_demb = upload_as<float>(demb);
  auto d_tok = sy::cuda::to_device(tokens);
  auto d_dout = upload_as<T>(dout);
  cu::EmbeddingBackward backward;
  for (const int n : {N, 700}) {
    cpu::embedding_backward(demb.data(), dout.data(), tokens.data(), n, C);
    backward.run(d_demb.data(), d_dout.data(), d_tok.data(), n, C, nullptr);
    EXPECT_EQ(download_f32(d_demb), demb) << n << " tokens";
  }
}

TYPED_TEST(DenseOps, ResidualAndConvert) {
  SY_REQUIRE_GPU();
  using T = TypeParam;
  std::mt19937 rng(3);
  const long n = 1000;
  const auto a = representable<T>(random_floats(rng, n));
  const auto b = representable<T>(random_floats(rng, n));
  std::vector<float> out(n);
  cpu::residual_forward(out.data(), a.data(), b.data(), n);
  auto d_a = upload_as<T>(a), d_b = upload_as<T>(b);
  auto d_out = poisoned<T>(n);
  cu::residual_forward(d_out.data(), d_a.data(), d_b.data(), n, nullptr);
  EXPECT_TRUE(close(download_f32(d_out), out, tol<T>()));
  // float -> T -> float round trip equals the host's rounding.
  auto d_f = upload_as<float>(a);
  auto d_t = poisoned<T>(n);
  auto d_back = poisoned<float>(n);
  cu::convert(d_t.data(), d_f.data(), n, nullptr);
  cu::convert(d_back.data(), d_t.data(), n, nullptr);
  EXPECT_TRUE(close(download_f32(d_back), a, 0.0));
}

TYPED_TEST(DenseOps, Rope) {
  SY_REQUIRE_GPU();
  using T = TypeParam;
  std::mt19937 rng(4);
  const double theta = 10000.0;
  const auto qkv = representable<T>(random_floats(rng, kN * 3 * kC));
  std::vector<float> out(kN * 3 * kC), back(kN * 3 * kC);
  cpu::rope_forward(out.data(), qkv.data(), kB, kT, kC, kNH, theta);
  cpu::rope_backward(back.data(), qkv.data(), kB, kT, kC, kNH, theta);
  auto d_qkv = upload_as<T>(qkv);
  auto d_out = poisoned<T>(kN * 3 * kC), d_back = poisoned<T>(kN * 3 * kC);
  const cu::RopeTable angles(kT, kC / kNH, theta);
  cu::rope_forward(d_out.data(), d_qkv.data(), angles, kB, kT, kC, kNH, nullptr);
  cu::rope_backward(d_back.data(), d_qkv.data(), angles, kB, kT, kC, kNH, nullptr);
  EXPECT_TRUE(close(download_f32(d_out), out, tol<T>()));
  EXPECT_TRUE(close(download_f32(d_back), back, tol<T>()));
  // The table holds the CPU's angles bit for bit (the rotations may still round apart: fma).
  std::vector<float> c, s;
  cpu::rope_table(kT, kC / kNH, theta, 0, c, s);
  std::vector<float> gc(c.size()), gs(s.size());  // pageable destinations: synchronous copies
  CUDA_CHECK(cudaMemcpy(gc.data(), angles.cos(), c.size() * sizeof(float), cudaMemcpyDeviceToHost));
  CUDA_CHECK(cudaMemcpy(gs.data(), angles.sin(), s.size() * sizeof(float), cudaMemcpyDeviceToHost));
  EXPECT_EQ(gc, c);
  EXPECT_EQ(gs, s);
  // A table made for another length or head dim is refused, not read out of its rows.
  const cu::RopeTable other(kT + 1, kC / kNH, theta);
  EXPECT_THROW(cu::rope_forward(d_out.data(), d_qkv.data(), other, kB, kT, kC, kNH, nullptr),
               std::invalid_argument);
}

template <class T>
void attention_matches_cpu(int B, int T_) {
  SCOPED_TRACE("B " + std::to_string(B) + " T " + std::to_string(T_));
  const int N = B * T_;
  std::mt19937 rng(5);
  const auto qkv = representable<T>(random_floats(rng, N * 3 * kC, -2.0f, 2.0f));
  const auto dout = representable<T>(random_floats(rng, N * kC));
  const long natt = static_cast<long>(B) * kNH * T_ * T_;
  std::vector<float> out(N * kC), stats(B * kNH * T_ * 2), dqkv(N * 3 * kC);
  cpu::attention_forward(out.data(), stats.data(), qkv.data(), B, T_, kC, kNH);
  cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), stats.data(), B, T_, kC, kNH);
  // The CPU keeps no probabilities (it recomputes them): the GPU's are held to the definition's.
  const std::vector<double> probs = sy::test::naive_attention(qkv, B, T_, kC, kNH).probs;
  const std::vector<float> att(probs.begin(), probs.end());

  sy::cuda::CublasHandle cublas(nullptr);
  auto d_qkv = upload_as<T>(qkv), d_dout = upload_as<T>(dout);
  auto d_out = poisoned<T>(N * kC), d_att = poisoned<T>(natt);
  auto d_dqkv = poisoned<T>(N * 3 * kC);
  auto d_fs = poisoned<T>(cu::attention_forward_scratch(B, T_, kC, kNH));
  auto d_bs = poisoned<T>(cu::attention_backward_scratch(B, T_, kC, kNH));
  cu::attention_forward(d_out.data(), d_att.data(), d_fs.data(), d_qkv.data(), B, T_, kC, kNH,
                        cublas.get(), nullptr);
  EXPECT_TRUE(close(download_f32(d_att), att, tol<T>()));
  EXPECT_TRUE(close(download_f32(d_out), out, tol<T>()));
  // The backward gets the reference att (rounded to T) so it is tested on its own.
  auto d_att_ref = upload_as<T>(representable<T>(att));
  cu::attention_backward(d_dqkv.data(), d_bs.data(), d_dout.data(), d_qkv.data(), d_att_ref.data(),
                         B, T_, kC, kNH, cublas.get(), nullptr);
  EXPECT_TRUE(close(download_f32(d_dqkv), dqkv, tol<T>()));
}

// The small shape, and T = 70: the causal softmax walks a row 32 positions at a time, so a row
// of more than 32 (three passes, the last partial) is the only way its loop runs again (the
// other GPU tests stop at T = 32; review).
TYPED_TEST(DenseOps, Attention) {
  SY_REQUIRE_GPU();
  attention_matches_cpu<TypeParam>(kB, kT);
  attention_matches_cpu<TypeParam>(2, 70);
}

template <class T>
void crossentropy_matches_cpu(int N, int V) {
  SCOPED_TRACE("N " + std::to_string(N) + " V " + std::to_string(V));
  std::mt19937 rng(6);
  const auto logits = representable<T>(random_floats(rng, N * V, -3.0f, 3.0f));
  const auto targets = random_ints(rng, N, V);
  const auto dlosses = random_floats(rng, N);
  std::vector<float> losses(N), probs(N * V), dlogits(N * V);
  cpu::crossentropy_forward(losses.data(), probs.data(), logits.data(), targets.data(), N, V);
  cpu::crossentropy_backward(dlogits.data(), probs.data(), targets.data(), dlosses.data(), N, V);

  auto d_logits = upload_as<T>(logits);
  auto d_tg = sy::cuda::to_device(targets);
  auto d_dl = upload_as<float>(dlosses);
  auto d_losses = poisoned<float>(N);
  // In place, as the model calls it: probs overwrite the logits, then dlogits the probs.
  cu::crossentropy_forward(d_losses.data(), d_logits.data(), d_logits.data(), d_tg.data(), N, V,
                           nullptr);
  EXPECT_TRUE(close(download_f32(d_losses), losses, tol<T>()));
  EXPECT_TRUE(close(download_f32(d_logits), probs, tol<T>()));
  auto d_probs = upload_as<T>(representable<T>(probs));
  auto d_dlogits = poisoned<T>(N * V);
  cu::crossentropy_backward(d_dlogits.data(), d_probs.data(), d_tg.data(), d_dl.data(), N, V,
                            nullptr);
  EXPECT_TRUE(close(download_f32(d_dlogits), dlogits, tol<T>()));
}

// The small shape, and a vocabulary of 5003 (more than a block's stride many times, odd): the
// backward was tested at V = 37 only (review).
TYPED_TEST(DenseOps, CrossEntropy) {
  SY_REQUIRE_GPU();
  crossentropy_matches_cpu<TypeParam>(kN, kV);
  crossentropy_matches_cpu<TypeParam>(6, 5003);
}

// matmul_forward / matmul_backward (dx assigned and accumulated; dw fp32 +=) against cpu::.
TYPED_TEST(DenseOps, Matmul) {
  SY_REQUIRE_GPU();
  using T = TypeParam;
  std::mt19937 rng(7);
  const int IC = kC, OC = 3 * kC + 5;
  const auto x = representable<T>(random_floats(rng, kN * IC));
  const auto w = representable<T>(random_floats(rng, IC * OC));
  const auto dy = representable<T>(random_floats(rng, kN * OC));
  const auto dx0 = representable<T>(random_floats(rng, kN * IC));
  const auto dw0 = random_floats(rng, IC * OC);
  std::vector<float> y(kN * OC), dx(kN * IC), dxacc = dx0, dw = dw0;
  cpu::matmul_forward(y.data(), x.data(), w.data(), kN, IC, OC);
  cpu::matmul_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), kN, IC, OC);
  cpu::matmul_backward<float>(dxacc.data(), nullptr, dy.data(), x.data(), w.data(), kN, IC, OC,
                              cpu::Grad::kAccumulate);

  sy::cuda::CublasHandle cublas(nullptr);
  auto d_x = upload_as<T>(x), d_w = upload_as<T>(w), d_dy = upload_as<T>(dy);
  auto d_y = poisoned<T>(kN * OC), d_dx = poisoned<T>(kN * IC);
  auto d_dxacc = upload_as<T>(dx0);
  auto d_dw = upload_as<float>(dw0);
  cu::matmul_forward(d_y.data(), d_x.data(), d_w.data(), kN, IC, OC, cublas.get());
  EXPECT_TRUE(close(download_f32(d_y), y, tol<T>()));
  cu::matmul_backward(d_dx.data(), d_dw.data(), d_dy.data(), d_x.data(), d_w.data(), kN, IC, OC,
                      cublas.get());
  EXPECT_TRUE(close(download_f32(d_dx), dx, tol<T>()));
  EXPECT_TRUE(close(download_f32(d_dw), dw, tol<T>()));
  cu::matmul_backward<T>(d_dxacc.data(), nullptr, d_dy.data(), d_x.data(), d_w.data(), kN, IC, OC,
                         cublas.get(), cu::Grad::kAccumulate);
  EXPECT_TRUE(close(download_f32(d_dxacc), dxacc, tol<T>()));
}

}  // namespace
