// The dense ops of ops.h: every backward against central finite differences of its forward in
// double, the float instantiation against the double one, and hand-computed forward values.
// Losses are L = sum(out * R) for a random R (crossentropy: L = sum(losses * R)), so the
// gradient flowing into each backward is R.
#include "kernels/cpu/ops.h"

#include <cblas.h>
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "common/grad_check.h"
#include "common/naive_attention.h"

namespace {

namespace cpu = sy::cpu;
using sy::test::convert;
using sy::test::dot;
using sy::test::fd_gradient;
using sy::test::naive_attention;
using sy::test::NaiveAttention;
using sy::test::random_vector;
using sy::test::rel_error;

// Shapes of the gradient checks (SPEC letters: B sequences, T positions, C d_model, NH heads).
constexpr int kB = 2, kT = 5, kC = 8, kNH = 2, kN = kB * kT, kV = 11;
constexpr double kEps = 1e-5;
constexpr double kTheta = 10000.0;
constexpr double kFdTol = 1e-6;     // double backward vs finite differences
constexpr double kFloatTol = 1e-3;  // float backward vs double backward

// Outputs with "(=)" semantics are prefilled with NaN: reading them instead of assigning shows.
template <class T>
std::vector<T> nan_vector(size_t n) {
  return std::vector<T>(n, std::numeric_limits<T>::quiet_NaN());
}

// ---------------------------------------------------------------- embedding

const std::vector<int32_t> kTokens = {3, 1, 3, 0, 10, 3, 7, 1, 1, 5};  // repeats on purpose

template <class T>
std::vector<T> embedding_grad(const std::vector<double>& emb, const std::vector<double>& R,
                              const std::vector<double>& demb_init) {
  std::vector<T> demb = convert<T>(demb_init);
  const std::vector<T> dout = convert<T>(R);
  cpu::embedding_backward(demb.data(), dout.data(), kTokens.data(), kN, kC);
  (void)emb;
  // (+=): return only what the call added.
  for (size_t i = 0; i < demb.size(); ++i) demb[i] -= static_cast<T>(demb_init[i]);
  return demb;
}

TEST(OpsGrad, Embedding) {
  std::mt19937 rng(1);
  auto emb = random_vector(rng, kV * kC);
  const auto R = random_vector(rng, kN * kC);
  const auto demb_init = random_vector(rng, kV * kC);
  std::vector<double> out(kN * kC);
  auto loss = [&] {
    cpu::embedding_forward(out.data(), kTokens.data(), emb.data(), kN, kC);
    return dot(out, R);
  };
  const auto g_fd = fd_gradient(loss, emb);
  const auto g = embedding_grad<double>(emb, R, demb_init);
  EXPECT_LE(rel_error(g, g_fd), kFdTol);
  EXPECT_LE(rel_error(embedding_grad<float>(emb, R, demb_init), g), kFloatTol);
}

TEST(OpsHand, EmbeddingCopiesRows) {
  std::mt19937 rng(2);
  const auto emb = random_vector(rng, kV * kC);
  auto out = nan_vector<double>(kN * kC);
  cpu::embedding_forward(out.data(), kTokens.data(), emb.data(), kN, kC);
  for (int n = 0; n < kN; ++n)
    for (int c = 0; c < kC; ++c) EXPECT_EQ(out[n * kC + c], emb[kTokens[n] * kC + c]);
}

TEST(OpsHand, ResidualAdds) {
  const std::vector<float> a = {1.f, -2.f, 0.5f}, b = {0.25f, 4.f, -0.5f};
  std::vector<float> out(3);
  cpu::residual_forward(out.data(), a.data(), b.data(), 3);
  EXPECT_EQ(out, (std::vector<float>{1.25f, 2.f, 0.f}));
  std::vector<float> inplace = a;  // out may alias an input (x = x + f(x))
  cpu::residual_forward(inplace.data(), inplace.data(), b.data(), 3);
  EXPECT_EQ(inplace, out);
}

// ---------------------------------------------------------------- rmsnorm

template <class T>
struct RmsGrads {
  std::vector<T> dx, dg;
};

template <class T>
RmsGrads<T> rmsnorm_grad(const std::vector<double>& x, const std::vector<double>& g,
                         const std::vector<double>& R, const std::vector<double>& dg_init) {
  const auto xt = convert<T>(x), gt = convert<T>(g), Rt = convert<T>(R);
  std::vector<T> out(kN * kC), rstd(kN);
  cpu::rmsnorm_forward(out.data(), rstd.data(), xt.data(), gt.data(), kN, kC, kEps);
  RmsGrads<T> r{nan_vector<T>(kN * kC), convert<T>(dg_init)};
  cpu::rmsnorm_backward(r.dx.data(), r.dg.data(), Rt.data(), xt.data(), gt.data(), rstd.data(), kN,
                        kC);
  for (size_t i = 0; i < r.dg.size(); ++i) r.dg[i] -= static_cast<T>(dg_init[i]);
  return r;
}

TEST(OpsGrad, RmsNorm) {
  std::mt19937 rng(3);
  auto x = random_vector(rng, kN * kC);
  auto g = random_vector(rng, kC, 0.5, 1.5);
  const auto R = random_vector(rng, kN * kC);
  const auto dg_init = random_vector(rng, kC);
  std::vector<double> out(kN * kC), rstd(kN);
  auto loss = [&] {
    cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), g.data(), kN, kC, kEps);
    return dot(out, R);
  };
  const auto dx_fd = fd_gradient(loss, x);
  const auto dg_fd = fd_gradient(loss, g);
  const auto gd = rmsnorm_grad<double>(x, g, R, dg_init);
  EXPECT_LE(rel_error(gd.dx, dx_fd), kFdTol);
  EXPECT_LE(rel_error(gd.dg, dg_fd), kFdTol);
  const auto gf = rmsnorm_grad<float>(x, g, R, dg_init);
  EXPECT_LE(rel_error(gf.dx, gd.dx), kFloatTol);
  EXPECT_LE(rel_error(gf.dg, gd.dg), kFloatTol);
}

TEST(OpsHand, RmsNormOfConstantVector) {
  // mean(x^2) = c^2, so out = c / sqrt(c^2 + eps) * g.
  const double c = -3.0, eps = 1e-5;
  std::mt19937 rng(4);
  const auto g = random_vector(rng, kC);
  std::vector<double> x(2 * kC, c), out(2 * kC), rstd(2);
  cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), g.data(), 2, kC, eps);
  const double r = 1.0 / std::sqrt(c * c + eps);
  for (int n = 0; n < 2; ++n) {
    EXPECT_NEAR(rstd[n], r, 1e-15);
    for (int i = 0; i < kC; ++i) EXPECT_NEAR(out[n * kC + i], c * r * g[i], 1e-14);
  }
}

// ---------------------------------------------------------------- rope

template <class T>
std::vector<T> rope_grad(const std::vector<double>& R) {
  const auto Rt = convert<T>(R);
  auto dqkv = nan_vector<T>(R.size());
  cpu::rope_backward(dqkv.data(), Rt.data(), kB, kT, kC, kNH, kTheta);
  return dqkv;
}

TEST(OpsGrad, Rope) {
  std::mt19937 rng(5);
  auto qkv = random_vector(rng, kN * 3 * kC);
  const auto R = random_vector(rng, kN * 3 * kC);
  std::vector<double> out(qkv.size());
  auto loss = [&] {
    cpu::rope_forward(out.data(), qkv.data(), kB, kT, kC, kNH, kTheta);
    return dot(out, R);
  };
  const auto g_fd = fd_gradient(loss, qkv);
  const auto g = rope_grad<double>(R);
  EXPECT_LE(rel_error(g, g_fd), kFdTol);
  EXPECT_LE(rel_error(rope_grad<float>(R), g), kFloatTol);
}

TEST(OpsHand, RopePosition0IsIdentityAndPosition1RotatesOneRadian) {
  // One sequence of two tokens, C = HD = 2: per token q = (1, 0), k = (0, 1), v = (5, 6).
  // i = 0 is the only pair, its angle is pos * theta^0 = pos for any theta.
  const std::vector<double> qkv = {1, 0, 0, 1, 5, 6, 1, 0, 0, 1, 5, 6};
  for (double theta : {10000.0, 3.0}) {
    std::vector<double> out(qkv.size());
    cpu::rope_forward(out.data(), qkv.data(), 1, 2, 2, 1, theta);
    for (int j = 0; j < 6; ++j) EXPECT_EQ(out[j], qkv[j]) << "position 0, column " << j;
    const double c = std::cos(1.0), s = std::sin(1.0);
    const std::vector<double> want = {c, s, -s, c, 5, 6};  // (x0 c - x1 s, x1 c + x0 s)
    for (int j = 0; j < 6; ++j) EXPECT_NEAR(out[6 + j], want[j], 1e-15) << "position 1, " << j;
  }
}

TEST(OpsHand, RopeSecondPairUsesThetaPower) {
  // HD = 4, theta = 100: pair (1, 3) at position 3 turns by 3 * 100^(-2/4) = 0.3 rad,
  // pair (0, 2) by 3 rad. Token 3 of one sequence, q = (1, 2, 3, 4), k = v = 0.
  const int T = 4, C = 4;
  std::vector<double> qkv(T * 3 * C, 0.0);
  const double q[4] = {1, 2, 3, 4};
  for (int i = 0; i < 4; ++i) qkv[3 * 3 * C + i] = q[i];
  std::vector<double> out(qkv.size());
  cpu::rope_forward(out.data(), qkv.data(), 1, T, C, 1, 100.0);
  const double* o = out.data() + 3 * 3 * C;
  EXPECT_NEAR(o[0], 1 * std::cos(3.0) - 3 * std::sin(3.0), 1e-14);
  EXPECT_NEAR(o[2], 3 * std::cos(3.0) + 1 * std::sin(3.0), 1e-14);
  EXPECT_NEAR(o[1], 2 * std::cos(0.3) - 4 * std::sin(0.3), 1e-14);
  EXPECT_NEAR(o[3], 4 * std::cos(0.3) + 2 * std::sin(0.3), 1e-14);
}

// ---------------------------------------------------------------- attention

struct AttnShape {
  int B, T, C, NH;
  int N() const { return B * T; }
};

// dqkv in T for the loss sum(attention(qkv) * R).
template <class T>
std::vector<T> attention_grad(const AttnShape& s, const std::vector<double>& qkv,
                              const std::vector<double>& R) {
  const auto qt = convert<T>(qkv), Rt = convert<T>(R);
  std::vector<T> out(s.N() * s.C), stats(s.B * s.NH * s.T * 2);
  cpu::attention_forward(out.data(), stats.data(), qt.data(), s.B, s.T, s.C, s.NH);
  auto dqkv = nan_vector<T>(qkv.size());
  cpu::attention_backward(dqkv.data(), Rt.data(), qt.data(), stats.data(), s.B, s.T, s.C, s.NH);
  return dqkv;
}

// The double backward against finite differences, the float one against the double.
void check_attention_grad(const AttnShape& s, unsigned seed) {
  std::mt19937 rng(seed);
  auto qkv = random_vector(rng, s.N() * 3 * s.C, -2.0, 2.0);  // wide enough for peaked softmaxes
  const auto R = random_vector(rng, s.N() * s.C);
  std::vector<double> out(s.N() * s.C), stats(s.B * s.NH * s.T * 2);
  auto loss = [&] {
    cpu::attention_forward(out.data(), stats.data(), qkv.data(), s.B, s.T, s.C, s.NH);
    return dot(out, R);
  };
  const auto g_fd = fd_gradient(loss, qkv);
  const auto g = attention_grad<double>(s, qkv, R);
  EXPECT_LE(rel_error(g, g_fd), kFdTol);
  EXPECT_LE(rel_error(attention_grad<float>(s, qkv, R), g), kFloatTol);
}

TEST(OpsGrad, Attention) {
  check_attention_grad({kB, kT, kC, kNH}, 6);
}

// Past one tile of query rows (64): 150 positions make three tiles, the last one partial, and the
// backward rebuilds each tile's probabilities from the forward's stats.
TEST(OpsGrad, AttentionAcrossTiles) {
  check_attention_grad({1, 150, 8, 2}, 16);
}

// RoPE then attention, as the model chains them: the gradients compose.
TEST(OpsGrad, RopeThenAttention) {
  std::mt19937 rng(7);
  auto qkv = random_vector(rng, kN * 3 * kC);
  const auto R = random_vector(rng, kN * kC);
  std::vector<double> rot(qkv.size()), out(kN * kC), stats(kB * kNH * kT * 2);
  auto loss = [&] {
    cpu::rope_forward(rot.data(), qkv.data(), kB, kT, kC, kNH, kTheta);
    cpu::attention_forward(out.data(), stats.data(), rot.data(), kB, kT, kC, kNH);
    return dot(out, R);
  };
  const auto g_fd = fd_gradient(loss, qkv);
  loss();
  std::vector<double> drot(qkv.size()), dqkv(qkv.size());
  cpu::attention_backward(drot.data(), R.data(), rot.data(), stats.data(), kB, kT, kC, kNH);
  cpu::rope_backward(dqkv.data(), drot.data(), kB, kT, kC, kNH, kTheta);
  EXPECT_LE(rel_error(dqkv, g_fd), kFdTol);
}

TEST(OpsHand, AttentionMatchesNaiveLoops) {
  std::mt19937 rng(8);
  const auto qkv = random_vector(rng, kN * 3 * kC, -2.0, 2.0);
  std::vector<double> out(kN * kC), stats(kB * kNH * kT * 2);
  cpu::attention_forward(out.data(), stats.data(), qkv.data(), kB, kT, kC, kNH);
  const NaiveAttention ref = naive_attention(qkv, kB, kT, kC, kNH);
  for (size_t i = 0; i < stats.size(); ++i) EXPECT_NEAR(stats[i], ref.stats[i], 1e-14) << i;
  for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], ref.out[i], 1e-14) << i;
}

// Scores near 450 (q and k share a component of 30; HD = 4): exp of one overflows a float, so the
// float softmax must subtract the row's largest score first. Against the naive loops in double,
// where exp(452) is still finite.
TEST(OpsHand, AttentionOfHugeScoresInFloat) {
  std::mt19937 rng(18);
  auto qkv = random_vector(rng, kN * 3 * kC, -1.0, 1.0);
  const int HD = kC / kNH;
  for (int n = 0; n < kN; ++n)
    for (int h = 0; h < kNH; ++h)
      for (int blk = 0; blk < 2; ++blk) qkv[n * 3 * kC + blk * kC + h * HD] = 30.0;
  const auto qf = convert<float>(qkv);
  std::vector<float> out(kN * kC), stats(kB * kNH * kT * 2);
  cpu::attention_forward(out.data(), stats.data(), qf.data(), kB, kT, kC, kNH);
  const NaiveAttention ref = naive_attention(qkv, kB, kT, kC, kNH);
  ASSERT_GT(ref.min_score, 440.0);
  for (size_t i = 0; i < stats.size(); ++i)  // scores ~450: float rounds them at ~3e-5
    EXPECT_NEAR(stats[i], ref.stats[i], 1e-4 * std::max(1.0, std::abs(ref.stats[i]))) << i;
  for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], ref.out[i], 1e-4) << i;
}

// The cached attention reads positions up to W back in a cache of `rows`: fewer rows than the
// window cannot hold them, and are refused rather than read modulo the wrong size.
TEST(OpsHand, CachedAttentionRefusesACacheSmallerThanItsWindow) {
  const int W = 4, C = kC;
  std::vector<double> q(3 * C, 0.5), kc(W * C, 0.25), vc(W * C, 1.0), out(C), scratch(W);
  EXPECT_THROW(cpu::attention_cached_forward(out.data(), scratch.data(), q.data(), 3 * C, kc.data(),
                                             vc.data(), W, W - 1, 0, 1, C, kNH),
               std::invalid_argument);
  cpu::attention_cached_forward(out.data(), scratch.data(), q.data(), 3 * C, kc.data(), vc.data(),
                                W, W, 0, 1, C, kNH);
  for (double o : out) EXPECT_EQ(o, 1.0);  // one position: its value
}

TEST(OpsHand, AttentionWithOneTokenReturnsV) {
  std::mt19937 rng(9);
  const int B = 3;
  const auto qkv = random_vector(rng, B * 3 * kC);
  std::vector<double> out(B * kC), stats(B * kNH * 2);
  cpu::attention_forward(out.data(), stats.data(), qkv.data(), B, 1, kC, kNH);
  for (int r = 0; r < B * kNH; ++r) EXPECT_EQ(stats[2 * r + 1], 1.0);  // 1 / exp(0)
  for (int n = 0; n < B; ++n)
    for (int c = 0; c < kC; ++c) EXPECT_EQ(out[n * kC + c], qkv[n * 3 * kC + 2 * kC + c]);
}

TEST(OpsHand, AttentionMasksTheFuture) {
  std::mt19937 rng(10);
  const auto qkv = random_vector(rng, kN * 3 * kC);
  std::vector<double> out(kN * kC), stats(kB * kNH * kT * 2);
  cpu::attention_forward(out.data(), stats.data(), qkv.data(), kB, kT, kC, kNH);
  // Change q, k and v of position 3 of sequence 0.
  const int t_changed = 3;
  auto qkv2 = qkv;
  for (int j = 0; j < 3 * kC; ++j) qkv2[t_changed * 3 * kC + j] += 0.5;
  std::vector<double> out2(out.size()), stats2(stats.size());
  cpu::attention_forward(out2.data(), stats2.data(), qkv2.data(), kB, kT, kC, kNH);
  for (int t = 0; t < kT; ++t)
    for (int c = 0; c < kC; ++c) {
      const double a = out[t * kC + c], b2 = out2[t * kC + c];
      if (t < t_changed) {
        EXPECT_DOUBLE_EQ(a, b2) << "earlier position " << t << " saw the future";
      } else {
        EXPECT_GT(std::abs(a - b2), 1e-6) << "position " << t << " ignored a visible token";
      }
    }
  // Sequence 1 is independent of sequence 0.
  for (int i = kT * kC; i < kN * kC; ++i) EXPECT_EQ(out[i], out2[i]);
  // The rows' stats (what the backward rebuilds the probabilities from) see the past only.
  for (int h = 0; h < kNH; ++h)
    for (int t = 0; t < kT; ++t)
      for (int j = 0; j < 2; ++j) {
        const int i = (h * kT + t) * 2 + j;
        if (t < t_changed) {
          EXPECT_EQ(stats[i], stats2[i]) << "head " << h << " position " << t;
        }
      }
  for (size_t i = static_cast<size_t>(kNH) * kT * 2; i < stats.size(); ++i)
    EXPECT_EQ(stats[i], stats2[i]);
}

// Restores the OpenBLAS and OpenMP thread counts a test changes.
class ThreadCounts {
 public:
  ThreadCounts() : blas_(openblas_get_num_threads()), omp_(omp_get_max_threads()) {}
  ~ThreadCounts() {
    openblas_set_num_threads(blas_);
    omp_set_num_threads(omp_);
  }
  ThreadCounts(const ThreadCounts&) = delete;
  ThreadCounts& operator=(const ThreadCounts&) = delete;

 private:
  int blas_, omp_;
};

TEST(OpsHand, AttentionIsBitwiseDeterministic) {
  // T*T*HD above OpenBLAS's threading threshold, and B*NH = 8 heads for OpenMP to split.
  const int B = 2, T = 128, C = 128, NH = 4, N = B * T;
  std::mt19937 rng(11);
  const auto qkv = random_vector<float>(rng, static_cast<size_t>(N) * 3 * C);
  const auto dout = random_vector<float>(rng, static_cast<size_t>(N) * C);
  auto run = [&] {
    std::vector<float> out(N * C), stats(B * NH * T * 2), dqkv(qkv.size());
    cpu::attention_forward(out.data(), stats.data(), qkv.data(), B, T, C, NH);
    cpu::attention_backward(dqkv.data(), dout.data(), qkv.data(), stats.data(), B, T, C, NH);
    out.insert(out.end(), dqkv.begin(), dqkv.end());
    return out;
  };
  const ThreadCounts restore;
  // Whatever BLAS threading the environment gives: repeated runs agree bit for bit.
  const auto first = run();
  ASSERT_EQ(run(), first);
  // Sequential BLAS puts the heads on OpenMP threads: 1 and 2 threads agree bit for bit.
  openblas_set_num_threads(1);
  omp_set_num_threads(1);
  const auto serial = run();
  omp_set_num_threads(2);
  ASSERT_EQ(run(), serial);
  ASSERT_EQ(run(), serial);
}

// ---------------------------------------------------------------- crossentropy

const std::vector<int32_t> kTargets = {0, 10, 3, 3, 5, 1, 9, 2, 10, 4};

template <class T>
std::vector<T> crossentropy_grad(const std::vector<double>& logits, const std::vector<double>& R) {
  const auto lt = convert<T>(logits), Rt = convert<T>(R);
  std::vector<T> losses(kN), probs(kN * kV);
  cpu::crossentropy_forward(losses.data(), probs.data(), lt.data(), kTargets.data(), kN, kV);
  auto dlogits = nan_vector<T>(kN * kV);
  cpu::crossentropy_backward(dlogits.data(), probs.data(), kTargets.data(), Rt.data(), kN, kV);
  return dlogits;
}

TEST(OpsGrad, CrossEntropy) {
  std::mt19937 rng(12);
  auto logits = random_vector(rng, kN * kV, -3.0, 3.0);
  const auto R = random_vector(rng, kN);
  std::vector<double> losses(kN), probs(kN * kV);
  auto loss = [&] {
    cpu::crossentropy_forward(losses.data(), probs.data(), logits.data(), kTargets.data(), kN, kV);
    return dot(losses, R);
  };
  const auto g_fd = fd_gradient(loss, logits);
  const auto g = crossentropy_grad<double>(logits, R);
  EXPECT_LE(rel_error(g, g_fd), kFdTol);
  EXPECT_LE(rel_error(crossentropy_grad<float>(logits, R), g), kFloatTol);
}

TEST(OpsHand, CrossEntropyOfUniformLogitsIsLogV) {
  const int N = 3, V = 50257;
  std::vector<float> logits(static_cast<size_t>(N) * V, 7.25f), losses(N), probs(logits.size());
  const std::vector<int32_t> targets = {0, 123, V - 1};
  cpu::crossentropy_forward(losses.data(), probs.data(), logits.data(), targets.data(), N, V);
  for (float l : losses) EXPECT_NEAR(l, std::log(double(V)), 1e-5);
  for (float p : probs) EXPECT_NEAR(p, 1.0 / V, 1e-9);
}

TEST(OpsHand, CrossEntropyInPlaceAndStableForHugeLogits) {
  std::mt19937 rng(13);
  auto logits = random_vector<float>(rng, kN * kV, -3.0, 3.0);
  std::vector<float> losses(kN), probs(logits.size());
  cpu::crossentropy_forward(losses.data(), probs.data(), logits.data(), kTargets.data(), kN, kV);
  // Shifting every logit by 1000 changes nothing mathematically; exp(1000) would overflow.
  auto shifted = logits;
  for (float& x : shifted) x += 1000.0f;
  std::vector<float> losses2(kN);
  cpu::crossentropy_forward(losses2.data(), shifted.data(), shifted.data(), kTargets.data(), kN,
                            kV);  // probs aliasing logits
  for (int n = 0; n < kN; ++n) {
    EXPECT_TRUE(std::isfinite(losses2[n]));
    EXPECT_NEAR(losses2[n], losses[n], 2e-4);  // the shift costs float precision (ulp(1000))
  }
  for (size_t i = 0; i < probs.size(); ++i) EXPECT_NEAR(shifted[i], probs[i], 2e-4);
  // In-place backward (dlogits aliasing probs) equals the out-of-place one.
  const std::vector<float> dl(kN, 0.5f);
  std::vector<float> d(probs.size());
  cpu::crossentropy_backward(d.data(), probs.data(), kTargets.data(), dl.data(), kN, kV);
  cpu::crossentropy_backward(probs.data(), probs.data(), kTargets.data(), dl.data(), kN, kV);
  EXPECT_EQ(d, probs);
}

TEST(OpsHand, CrossEntropyOfOneDominantLogit) {
  // Row (-500, 800, 0, 0, ...): logsumexp = 800 + log(1 + tiny) = 800 to double precision, so
  // the loss of target 0 is 1300 and of target 1 is 0; exp(800) overflows double unless the
  // row max is subtracted first.
  const int V = 6;
  std::vector<double> logits(2 * V, 0.0), losses(2), probs(2 * V);
  logits[0] = logits[V] = -500.0;
  logits[1] = logits[V + 1] = 800.0;
  const std::vector<int32_t> targets = {0, 1};
  cpu::crossentropy_forward(losses.data(), probs.data(), logits.data(), targets.data(), 2, V);
  EXPECT_DOUBLE_EQ(losses[0], 1300.0);
  EXPECT_DOUBLE_EQ(losses[1], 0.0);
  EXPECT_DOUBLE_EQ(probs[1], 1.0);
  EXPECT_EQ(probs[0], 0.0);
}

}  // namespace
