// Schedule, clipping, AdamW and the router-bias update against values worked out by hand.
#include "src/optim/optim.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

namespace {

using sy::AdamW;
using sy::ParamKind;
using sy::ParamTable;
using sy::TrainConfig;

TrainConfig schedule(int64_t steps, int64_t warmup, double lr = 1e-3, double min_lr = 1e-4) {
  TrainConfig t;
  t.steps = steps;
  t.warmup_steps = warmup;
  t.lr = lr;
  t.min_lr = min_lr;
  return t;
}

TEST(Schedule, WarmupIsLinearFromLrOverW) {
  const TrainConfig t = schedule(101, 10);
  EXPECT_DOUBLE_EQ(sy::learning_rate(t, 0), 1e-4);  // 1e-3 * 1/10
  EXPECT_DOUBLE_EQ(sy::learning_rate(t, 4), 5e-4);  // 1e-3 * 5/10
  EXPECT_DOUBLE_EQ(sy::learning_rate(t, 9), 1e-3);  // 1e-3 * 10/10
}

TEST(Schedule, CosineFromLrToMinLrOnLastStep) {
  // W = 10, S = 101: the decay runs over steps 10..100, p = (step - 10) / 90.
  const TrainConfig t = schedule(101, 10);
  EXPECT_DOUBLE_EQ(sy::learning_rate(t, 10), 1e-3);  // p = 0, cos 0 = 1
  // p = 1/3: cos(pi/3) = 1/2 -> 1e-4 + 0.5 * 9e-4 * 1.5 = 7.75e-4
  EXPECT_NEAR(sy::learning_rate(t, 40), 7.75e-4, 1e-15);
  // p = 1/2: cos(pi/2) = 0 -> 1e-4 + 0.5 * 9e-4 = 5.5e-4
  EXPECT_NEAR(sy::learning_rate(t, 55), 5.5e-4, 1e-15);
  // p = 2/3: cos(2pi/3) = -1/2 -> 1e-4 + 0.5 * 9e-4 * 0.5 = 3.25e-4
  EXPECT_NEAR(sy::learning_rate(t, 70), 3.25e-4, 1e-15);
  EXPECT_NEAR(sy::learning_rate(t, 100), 1e-4, 1e-15);  // p = 1, cos pi = -1
  EXPECT_NEAR(sy::learning_rate(t, 500), 1e-4, 1e-15);  // past the end: stays at min_lr
}

TEST(Schedule, DecreasesMonotonicallyAfterWarmup) {
  const TrainConfig t = schedule(57, 7);
  for (int64_t s = 7; s < 56; ++s)
    EXPECT_GE(sy::learning_rate(t, s), sy::learning_rate(t, s + 1)) << "step " << s;
}

TEST(Schedule, NoWarmup) {
  const TrainConfig t = schedule(11, 0, 2e-3, 0.0);
  EXPECT_DOUBLE_EQ(sy::learning_rate(t, 0), 2e-3);
  // p = 5/10: 0 + 0.5 * 2e-3 * (1 + 0) = 1e-3
  EXPECT_NEAR(sy::learning_rate(t, 5), 1e-3, 1e-15);
  EXPECT_NEAR(sy::learning_rate(t, 10), 0.0, 1e-15);
}

TEST(Schedule, StepsNotLongerThanWarmup) {
  // S = 5 <= W = 10: every step of the run is warmup; beyond it min_lr.
  const TrainConfig t = schedule(5, 10);
  EXPECT_DOUBLE_EQ(sy::learning_rate(t, 4), 5e-4);
  EXPECT_NEAR(sy::learning_rate(t, 10), 1e-4, 1e-15);
  // S = W + 1: the one step after warmup is the last one, so it is at min_lr.
  const TrainConfig t2 = schedule(11, 10);
  EXPECT_DOUBLE_EQ(sy::learning_rate(t2, 9), 1e-3);
  EXPECT_NEAR(sy::learning_rate(t2, 10), 1e-4, 1e-15);
}

TEST(Schedule, RejectsNegativeStep) {
  EXPECT_THROW(sy::learning_rate(schedule(10, 2), -1), std::logic_error);
}

TEST(Clip, NormAndFactor) {
  const float g[2] = {3.0f, -4.0f};
  EXPECT_DOUBLE_EQ(sy::global_grad_norm(g, 2), 5.0);
  EXPECT_DOUBLE_EQ(sy::grad_sq_sum(g, 2), 25.0);
  EXPECT_DOUBLE_EQ(sy::clip_factor(5.0, 1.0), 1.0 / (5.0 + 1e-6));
  EXPECT_DOUBLE_EQ(sy::clip_factor(0.5, 1.0), 1.0);  // under the threshold: untouched
  EXPECT_DOUBLE_EQ(sy::clip_factor(0.0, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(sy::clip_factor(50.0, 0.0), 1.0);   // clip 0: off
  EXPECT_DOUBLE_EQ(sy::clip_factor(50.0, -1.0), 1.0);  // negative: off
  EXPECT_TRUE(std::isnan(sy::clip_factor(std::nan(""), 1.0)));
  EXPECT_TRUE(std::isnan(sy::clip_factor(INFINITY, 1.0)));
  EXPECT_TRUE(std::isnan(sy::clip_factor(INFINITY, 0.0)));
}

TEST(Clip, NormOfLargeBufferMatchesLongDouble) {
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0.0f, 1e-2f);
  std::vector<float> g(100001);
  long double ref = 0.0L;
  for (float& x : g) {
    x = dist(rng);
    ref += static_cast<long double>(x) * x;
  }
  EXPECT_NEAR(sy::global_grad_norm(g.data(), g.size()), static_cast<double>(std::sqrt(ref)), 1e-12);
}

// One kMatrix "w" of 2 elements, lr 0.1, wd 0.1; step 1 with grad_scale 1, step 2 with 0.5.
TEST(AdamW, TwoStepsByHand) {
  ParamTable table;
  table.add("w", {2}, ParamKind::kMatrix, 0.02);
  AdamW opt(table, 0.1);
  std::vector<float> p = {1.0f, -2.0f};
  const double eps = 1e-8;

  // Step 1, g = (0.5, -1): m = 0.1 g = (0.05, -0.1); v = 0.05 g^2 = (0.0125, 0.05);
  // bias corrections 1 - 0.9 = 0.1 and 1 - 0.95 = 0.05 give mhat = g, vhat = g^2, so
  // u = g / (|g| + eps) = (0.5 / (0.5 + eps), -1 / (1 + eps));
  // p = p - 0.1 (u + 0.1 p) = (1 - 0.1 (u0 + 0.1), -2 - 0.1 (u1 - 0.2)).
  const float g1[2] = {0.5f, -1.0f};
  opt.step(p.data(), g1, 0.1, 1.0);
  const double u10 = 0.5 / (0.5 + eps), u11 = -1.0 / (1.0 + eps);
  const double p10 = 1.0 - 0.1 * (u10 + 0.1 * 1.0), p11 = -2.0 - 0.1 * (u11 + 0.1 * -2.0);
  EXPECT_NEAR(p[0], p10, 1e-7);  // = 0.890000002
  EXPECT_NEAR(p[1], p11, 1e-7);  // = -1.880000001
  // m and v are stored as float: tolerances are a few float ulps of the values.
  EXPECT_NEAR(opt.m()[0], 0.05, 2e-8);
  EXPECT_NEAR(opt.m()[1], -0.1, 2e-8);
  EXPECT_NEAR(opt.v()[0], 0.0125, 2e-8);
  EXPECT_NEAR(opt.v()[1], 0.05, 2e-8);
  EXPECT_EQ(opt.step_count(), 1);

  // Step 2, raw g = (0.25, 2), grad_scale 0.5 -> g = (0.125, 1):
  // m = 0.9 (0.05, -0.1) + 0.1 (0.125, 1) = (0.0575, 0.01)
  // v = 0.95 (0.0125, 0.05) + 0.05 (0.015625, 1) = (0.01265625, 0.0975)
  // bias corrections 1 - 0.81 = 0.19 and 1 - 0.9025 = 0.0975
  const float g2[2] = {0.25f, 2.0f};
  opt.step(p.data(), g2, 0.1, 0.5);
  const double u20 = (0.0575 / 0.19) / (std::sqrt(0.01265625 / 0.0975) + eps);
  const double u21 = (0.01 / 0.19) / (std::sqrt(0.0975 / 0.0975) + eps);
  EXPECT_NEAR(p[0], p10 - 0.1 * (u20 + 0.1 * p10), 1e-6);
  EXPECT_NEAR(p[1], p11 - 0.1 * (u21 + 0.1 * p11), 1e-6);
  EXPECT_NEAR(opt.m()[0], 0.0575, 2e-8);
  EXPECT_NEAR(opt.m()[1], 0.01, 2e-8);
  EXPECT_NEAR(opt.v()[0], 0.01265625, 2e-8);
  EXPECT_NEAR(opt.v()[1], 0.0975, 2e-8);
  EXPECT_EQ(opt.step_count(), 2);
}

ParamTable mixed_table() {
  ParamTable t;
  t.add("mat", {2, 3}, ParamKind::kMatrix, 0.02);
  t.add("gain", {3}, ParamKind::kGain);
  t.add("bias", {2}, ParamKind::kBias);
  return t;
}

TEST(AdamW, WeightDecayOnMatricesOnlyAndBiasUntouched) {
  const ParamTable table = mixed_table();
  AdamW opt(table, 0.5);
  std::vector<float> p = {1, -2, 3, -4, 5, -6, 1.5f, 0.5f, -0.5f, 0.25f, -0.75f};
  const std::vector<float> p0 = p;
  const std::vector<float> zero(p.size(), 0.0f);
  // Zero gradients: the Adam direction is 0 / (0 + eps) = 0, so only the decay can move p:
  // matrix p *= (1 - lr wd) = (1 - 0.2 * 0.5) = 0.9; gain and bias stay.
  opt.step(p.data(), zero.data(), 0.2, 1.0);
  for (size_t i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(p[i], p0[i] * 0.9f) << i;
  for (size_t i = 6; i < 11; ++i) EXPECT_EQ(p[i], p0[i]) << i;

  // Nonzero gradients on everything: the gain moves by exactly lr * g/(|g| + eps) on the first
  // step (no decay term), the bias not at all, and its moments stay zero.
  AdamW opt2(table, 0.5);
  std::vector<float> q = p0;
  std::vector<float> g(p.size(), 0.0f);
  g[6] = 2.0f, g[7] = -0.5f, g[8] = 1e-3f, g[9] = 7.0f, g[10] = -7.0f;
  opt2.step(q.data(), g.data(), 0.2, 1.0);
  for (size_t i = 6; i < 9; ++i) {
    const double gi = g[i];
    EXPECT_NEAR(q[i], p0[i] - 0.2 * gi / (std::fabs(gi) + 1e-8), 1e-6) << i;
  }
  EXPECT_EQ(q[9], p0[9]);
  EXPECT_EQ(q[10], p0[10]);
  EXPECT_EQ(opt2.m()[9], 0.0f);
  EXPECT_EQ(opt2.v()[10], 0.0f);
}

TEST(AdamW, GradScaleScalesGradients) {
  const ParamTable table = mixed_table();
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> p(table.total_numel()), g(p.size()), g2(p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    p[i] = dist(rng);
    g[i] = dist(rng);
    g2[i] = 4.0f * g[i];  // a power of two: scaling back by 0.25 is exact
  }
  std::vector<float> pa = p, pb = p;
  AdamW a(table, 0.1), b(table, 0.1);
  for (int s = 0; s < 3; ++s) {
    a.step(pa.data(), g.data(), 1e-2, 1.0);
    b.step(pb.data(), g2.data(), 1e-2, 0.25);
  }
  EXPECT_EQ(pa, pb);
  EXPECT_EQ(a.m(), b.m());
  EXPECT_EQ(a.v(), b.v());
}

TEST(AdamW, RestoredStateContinuesBitForBit) {
  const ParamTable table = mixed_table();
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> p(table.total_numel());
  for (float& x : p) x = dist(rng);
  std::vector<std::vector<float>> grads(4, std::vector<float>(p.size()));
  for (auto& gv : grads)
    for (float& x : gv) x = dist(rng);

  AdamW full(table, 0.1);
  std::vector<float> p_full = p;
  for (const auto& gv : grads) full.step(p_full.data(), gv.data(), 3e-3, 0.7);

  AdamW first(table, 0.1);
  std::vector<float> p_resumed = p;
  for (int s = 0; s < 2; ++s) first.step(p_resumed.data(), grads[s].data(), 3e-3, 0.7);
  AdamW resumed(table, 0.1);  // what a checkpoint load does
  resumed.m() = first.m();
  resumed.v() = first.v();
  resumed.set_step_count(first.step_count());
  for (int s = 2; s < 4; ++s) resumed.step(p_resumed.data(), grads[s].data(), 3e-3, 0.7);
  EXPECT_EQ(p_resumed, p_full);
  EXPECT_EQ(resumed.m(), full.m());
  EXPECT_EQ(resumed.step_count(), 4);
}

TEST(RouterBias, SignUpdate) {
  // mean load 20: underloaded expert 0 goes up, overloaded 2 down, 1 and 3 at the mean stay.
  float bias[4] = {0.0f, 0.5f, -0.25f, 1.0f};
  const int64_t load[4] = {10, 20, 30, 20};
  EXPECT_EQ(sy::update_router_bias(bias, load, 4, 0.125), 0);  // all finite
  EXPECT_EQ(bias[0], 0.125f);
  EXPECT_EQ(bias[1], 0.5f);
  EXPECT_EQ(bias[2], -0.375f);
  EXPECT_EQ(bias[3], 1.0f);

  // A non-integer mean (1.5): nobody is at the mean.
  float b2[2] = {0.0f, 0.0f};
  const int64_t load2[2] = {1, 2};
  sy::update_router_bias(b2, load2, 2, 1e-3);
  EXPECT_FLOAT_EQ(b2[0], 1e-3f);
  EXPECT_FLOAT_EQ(b2[1], -1e-3f);

  // Perfect balance: nothing moves.
  float b3[3] = {0.1f, 0.2f, 0.3f};
  const int64_t load3[3] = {7, 7, 7};
  sy::update_router_bias(b3, load3, 3, 1.0);
  EXPECT_EQ(b3[0], 0.1f);
  EXPECT_EQ(b3[1], 0.2f);
  EXPECT_EQ(b3[2], 0.3f);

  // A rate past fp32 (1e39): the two experts off the mean go to +-inf, and are counted.
  float b4[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  EXPECT_EQ(sy::update_router_bias(b4, load, 4, 1e39), 2);
  EXPECT_TRUE(std::isinf(b4[0]) && std::isinf(b4[2]));
}

// The update's own overflow is counted (the trainer stops on it, SPEC 9): a finite gradient of
// 1e20 gives v = (1 - 0.95) * 1e40 = 5e38, past fp32's 3.4e38, and that element's parameter
// would never move again (m / (sqrt(inf) + eps) = 0); a huge lr overflows the parameters.
TEST(AdamW, CountsTheElementsTheUpdateLeftNotFinite) {
  const ParamTable table = mixed_table();
  const size_t P = table.total_numel();
  std::vector<float> p(P, 0.5f), g(P, 0.1f);
  AdamW opt(table, 0.0);
  EXPECT_EQ(opt.step(p.data(), g.data(), 1e-3, 1.0), 0);
  g[0] = 1e20f;
  g[3] = -1e20f;
  EXPECT_EQ(opt.step(p.data(), g.data(), 1e-3, 1.0), 2);
  EXPECT_TRUE(std::isinf(opt.v()[0]) && std::isinf(opt.v()[3]));
  AdamW huge(table, 0.0);
  std::vector<float> q(P, 0.5f), h(P, 0.1f);
  h[6] = 0.0f;  // a zero gradient moves nothing: its element stays finite
  // every element that moves (the bias never does: it is not AdamW's) goes past fp32
  const int64_t moved = huge.step(q.data(), h.data(), 1e39, 1.0);
  int64_t want = 0;
  for (size_t i = 0; i < P; ++i) want += !std::isfinite(q[i]);
  EXPECT_EQ(moved, want);
  EXPECT_GT(want, 0);
  EXPECT_TRUE(std::isfinite(q[6]));
}

}  // namespace
