// The router's variants of SPEC section 1 beyond plain softmax top-k: group-limited
// (node-limited) selection worked out by hand (group scores, ties to the lower group, the bias
// in the group score but not in the gates), against a sorting reference on random inputs, and the
// MoE layer with groups against the naive per-token forward; sigmoid scores and the gate scale
// (gates and the aux loss on normalised scores by hand, the layer against the naive forward).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/grad_check.h"
#include "kernels/cpu/moe_ops.h"
#include "src/model/moe.h"
#include "test_moe_util.h"

namespace sy {
namespace {

using test::MoeParams;

struct Routed {
  std::vector<double> probs, lse, gates;
  std::vector<int32_t> topk;
};

// cpu::router_forward<double> of N tokens.
Routed route(const std::vector<double>& z, const std::vector<double>& bias, int E, int K,
             const RouterRule& rule) {
  const int N = static_cast<int>(z.size()) / E;
  Routed r{std::vector<double>(z.size()), std::vector<double>(N), std::vector<double>(N * K),
           std::vector<int32_t>(N * K)};
  cpu::router_forward(r.probs.data(), r.lse.data(), r.topk.data(), r.gates.data(), z.data(),
                      bias.empty() ? nullptr : bias.data(), N, E, K, rule);
  return r;
}

RouterRule groups(int R, int M) {
  return {.groups = R, .groups_topk = M};
}

// E = 8 in R = 4 groups of 2, K = 2. z = (3, -5 | 2.5, 2.4 | 0, 0 | 0, 0): plain top-2 is {0, 2}.
// M = 1 (r = 2 experts per group score): group 0 scores p0 + p1 ~ (e^3 + e^-5) / Z = 20.09 / Z,
// group 1 scores p2 + p3 = (e^2.5 + e^2.4) / Z = 23.21 / Z, so only group 1 is kept: {2, 3},
// gates normalised over those two. M = 2 (r = 1: a group scores its best p): groups 0 and 1,
// so {0, 2} as without groups.
TEST(RouterGroups, HandPickedGroupScores) {
  const std::vector<double> z = {3, -5, 2.5, 2.4, 0, 0, 0, 0};
  const Routed plain = route(z, {}, 8, 2, RouterRule{});
  EXPECT_EQ(plain.topk, (std::vector<int32_t>{0, 2}));

  const Routed m1 = route(z, {}, 8, 2, groups(4, 1));
  EXPECT_EQ(m1.topk, (std::vector<int32_t>{2, 3}));
  const double e25 = std::exp(2.5), e24 = std::exp(2.4);
  EXPECT_NEAR(m1.gates[0], e25 / (e25 + e24), 1e-15);
  EXPECT_NEAR(m1.gates[1], e24 / (e25 + e24), 1e-15);
  EXPECT_EQ(m1.probs, plain.probs) << "groups change the selection only";

  EXPECT_EQ(route(z, {}, 8, 2, groups(4, 2)).topk, (std::vector<int32_t>{0, 2}));
  // M = R keeps every group: plain top-k.
  EXPECT_EQ(route(z, {}, 8, 2, groups(4, 4)).topk, plain.topk);
}

// Equal group scores go to the lower group index. E = 6 in 3 groups, K = 2, M = 1:
// z = (0, 0 | 1, 2 | 2, 1): groups 1 and 2 both score (e^2 + e) / Z (best first), group 1 wins:
// experts 3 then 2. All logits equal: every group ties, the lowest M groups are kept and inside
// them the lowest experts: E = 8, R = 4, M = 2, K = 3 gives 0, 1, 2.
TEST(RouterGroups, TiesGoToTheLowerGroup) {
  EXPECT_EQ(route({0, 0, 1, 2, 2, 1}, {}, 6, 2, groups(3, 1)).topk, (std::vector<int32_t>{3, 2}));
  EXPECT_EQ(route({0, 0, 2, 1, 1, 2}, {}, 6, 2, groups(3, 1)).topk, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(route(std::vector<double>(8, 0.7), {}, 8, 3, groups(4, 2)).topk,
            (std::vector<int32_t>{0, 1, 2}));
}

// The bias enters the group scores (and the selection) but never the gates. E = 4 in 2 groups,
// K = 1, M = 1, z = (1, 0 | 0.5, 0): p = (e, 1, e^.5, 1) / Z = (0.427, 0.157, 0.259, 0.157).
// Unbiased, group 0 (0.427) beats group 1 (0.259); with b = (0, 0, 0.5, 0) group 1 scores 0.759
// and expert 2 is chosen with its raw p as the gate (norm_topk off).
TEST(RouterGroups, BiasMovesTheGroupNotTheGate) {
  const std::vector<double> z = {1, 0, 0.5, 0};
  const double Z = std::exp(1.0) + 2.0 + std::exp(0.5);
  EXPECT_EQ(route(z, {}, 4, 1, RouterRule{.norm_topk = false, .groups = 2, .groups_topk = 1}).topk,
            (std::vector<int32_t>{0}));
  const Routed biased =
      route(z, {0, 0, 0.5, 0}, 4, 1, RouterRule{.norm_topk = false, .groups = 2, .groups_topk = 1});
  EXPECT_EQ(biased.topk, (std::vector<int32_t>{2}));
  EXPECT_NEAR(biased.gates[0], std::exp(0.5) / Z, 1e-15);
}

// A diverged step (NaN logits) still selects K distinct experts inside M distinct groups.
TEST(RouterGroups, NanLogitsStillSelectDistinctExperts) {
  const Routed r = route(std::vector<double>(8, std::nan("")), {}, 8, 3, groups(4, 2));
  EXPECT_EQ(std::set<int32_t>(r.topk.begin(), r.topk.end()).size(), 3u);
  std::set<int32_t> used_groups;
  for (int32_t e : r.topk) {
    EXPECT_TRUE(e >= 0 && e < 8) << e;
    used_groups.insert(e / 2);
  }
  EXPECT_LE(used_groups.size(), 2u);
}

// A NaN score ranks last (as -inf), as the GPU router ranks it: sigmoid scores of
// z = (NaN, 0, -1) are (NaN, 0.5, 0.27), and top-1 picks expert 1, then 2 at top-2.
TEST(RouterSigmoid, ANanScoreRanksLast) {
  const RouterRule sigmoid{.sigmoid = true};
  EXPECT_EQ(route({std::nan(""), 0, -1}, {}, 3, 1, sigmoid).topk, (std::vector<int32_t>{1}));
  EXPECT_EQ(route({std::nan(""), 0, -1}, {}, 3, 2, sigmoid).topk, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(route({0, -1, 1}, {std::nan(""), 0, 0}, 3, 1, sigmoid).topk, (std::vector<int32_t>{2}));
}

// Random tokens against test::naive_topk (sorting), float and double, with a bias; the gates
// are the selected p, normalised.
TEST(RouterGroups, MatchesSortingReference) {
  struct Case {
    int E, K, R, M;
  };
  for (const Case c :
       {Case{8, 2, 4, 1}, Case{8, 2, 4, 2}, Case{16, 4, 4, 2}, Case{16, 3, 8, 2}, Case{12, 4, 3, 2},
        Case{64, 8, 8, 4}, Case{6, 2, 2, 2}, Case{256, 64, 1, 1}, Case{256, 64, 8, 4}}) {
    const int N = 50;
    std::mt19937 rng(c.E * 100 + c.K * 10 + c.M);
    const std::vector<double> z = test::random_vector(rng, static_cast<size_t>(N) * c.E, -3, 3);
    const std::vector<double> bias = test::random_vector(rng, c.E, -0.05, 0.05);
    const Routed r = route(z, bias, c.E, c.K, groups(c.R, c.M));
    std::vector<float> pf(z.size()), lf(N), gf(N * c.K);
    std::vector<int32_t> tf(N * c.K);
    const std::vector<float> zf = test::convert<float>(z), bf = test::convert<float>(bias);
    cpu::router_forward(pf.data(), lf.data(), tf.data(), gf.data(), zf.data(), bf.data(), N, c.E,
                        c.K, groups(c.R, c.M));
    for (int n = 0; n < N; ++n) {
      const std::vector<int> want =
          test::naive_topk(&r.probs[static_cast<size_t>(n) * c.E], bias, c.E, c.K, c.R, c.M);
      double sum = 0.0;
      for (int e : want) sum += r.probs[n * c.E + e];
      for (int j = 0; j < c.K; ++j) {
        EXPECT_EQ(r.topk[n * c.K + j], want[j]) << "E" << c.E << " R" << c.R << " token " << n;
        EXPECT_EQ(tf[n * c.K + j], want[j]) << "float, E" << c.E << " R" << c.R << " token " << n;
        EXPECT_NEAR(r.gates[n * c.K + j], r.probs[n * c.E + want[j]] / sum, 1e-15);
      }
    }
  }
}

// Many ties and a large K: logits take three values, so most scores tie and the selection
// order inside a tie is the lower index first, as in the sorting reference (a stable sort).
TEST(RouterGroups, TiesAtLargeKGoToTheLowerIndex) {
  const int N = 20, E = 256, K = 64;
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> level(-1, 1);
  std::vector<double> z(static_cast<size_t>(N) * E);
  for (double& v : z) v = level(rng);
  const std::vector<double> no_bias(E, 0.0);
  for (const RouterRule& rule : {groups(1, 1), groups(8, 4)}) {
    const Routed r = route(z, {}, E, K, rule);
    for (int n = 0; n < N; ++n) {
      const std::vector<int> want = test::naive_topk(&r.probs[static_cast<size_t>(n) * E], no_bias,
                                                     E, K, rule.groups, rule.groups_topk);
      for (int j = 0; j < K; ++j)
        EXPECT_EQ(r.topk[n * K + j], want[j]) << "R" << rule.groups << " token " << n << " j " << j;
    }
  }
}

// A layer of 8 experts top-3, one shared expert, d_model 8, with `edit` applied.
template <class Edit>
MoeDims layer_dims(Edit edit) {
  MoeDims d{.C = 8, .E = 8, .K = 3, .F = 5, .S = 1, .aux_coeff = 0.05, .z_coeff = 0.01};
  edit(d);
  return d;
}

// MoeLayer<double>::forward of two sequences of 6 tokens (random weights, inputs and bias)
// against test::naive_moe_forward; returns the layer's routing counts.
MoeStats expect_layer_matches_naive(const MoeDims& d, const std::string& what) {
  const int B = 2, T = 6, N = B * T;
  const LossScale s{1.0 / N, 1.0 / B};
  std::mt19937 rng(21);
  MoeParams<double> w = test::random_params(d, rng, 2.0);
  w.bias = test::random_vector(rng, d.E, -0.05, 0.05);
  const std::vector<double> m = test::random_vector(rng, static_cast<size_t>(N) * d.C);
  std::vector<double> want, out(m.size());
  const MoeLoss lw = test::naive_moe_forward(want, m, B, T, d, w, s);
  MoeLayer<double> layer(d);
  MoeStats st;
  const MoeLoss l = layer.forward(out.data(), m.data(), B, T, w.view(), s, &st);
  EXPECT_LE(test::rel_error(out, want), 1e-13) << what;
  EXPECT_NEAR(l.aux, lw.aux, 1e-14) << what;
  EXPECT_NEAR(l.z, lw.z, 1e-14) << what;
  return st;
}

// The layer with group-limited routing against the naive per-token forward (sequence and
// micro-batch aux scope, shared expert, bias); the groups bind: without them the same tokens
// route differently.
TEST(RouterGroups, LayerMatchesNaiveForward) {
  for (AuxScope scope : {AuxScope::kSequence, AuxScope::kMicroBatch}) {
    const MoeDims d = layer_dims([&](MoeDims& x) {
      x.aux_scope = scope;
      x.route_groups = 4;
      x.route_groups_topk = 2;
    });
    const MoeStats grouped = expect_layer_matches_naive(d, "groups");
    MoeDims plain = d;
    plain.route_groups = 1;
    EXPECT_NE(grouped.selected, expect_layer_matches_naive(plain, "plain").selected);
  }
}

// Sigmoid scores by hand: E = 3, K = 2, router = identity, one sequence of two tokens with
// logits (1, 0, -1) and (0, 2, 0). p = sigmoid(z): (s1, 1/2, 1 - s1) and (1/2, s2, 1/2), s1 =
// sigmoid(1), s2 = sigmoid(2); the sums are S0 = 3/2 and S1 = 1 + s2. Token 0 takes experts
// {0, 1}, token 1 {1, 0} (experts 0 and 2 tie at 1/2: the lower wins). Gates are p over the
// selected sum, times gate_scale 2.5. aux: f = (2/4, 2/4, 0), P_i = mean over the tokens of
// p_i / S_n; no z-loss.
TEST(RouterSigmoid, GatesAndAuxLossByHand) {
  auto sig = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
  const double s1 = sig(1.0), s2 = sig(2.0), S0 = 1.5, S1 = 1.0 + s2;
  const MoeDims d{.C = 3,
                  .E = 3,
                  .K = 2,
                  .F = 2,
                  .aux_coeff = 0.1,
                  .score = Score::kSigmoid,
                  .gate_scale = 2.5};
  std::mt19937 rng(8);
  MoeParams<double> w = test::random_params(d, rng);
  std::fill(w.router.begin(), w.router.end(), 0.0);
  for (int i = 0; i < 3; ++i) w.router[i * 3 + i] = 1.0;
  const std::vector<double> m = {1, 0, -1, 0, 2, 0};
  const LossScale s{0.25, 0.5};
  MoeLayer<double> layer(d);
  const MoeLoss l = layer.route(m.data(), 1, 2, w.router.data(), w.bias.data(), s, nullptr);

  const double P0 = (s1 / S0 + 0.5 / S1) / 2, P1 = (0.5 / S0 + s2 / S1) / 2;
  EXPECT_NEAR(l.aux, s.group_weight * 0.1 * 3 * (0.5 * P0 + 0.5 * P1), 1e-15);
  EXPECT_EQ(l.z, 0.0);
  // Rows expert-sorted: expert 0 (tokens 0, 1), expert 1 (tokens 0, 1).
  ASSERT_EQ(layer.num_rows(), 4);
  EXPECT_EQ(std::vector<int32_t>(layer.row_token(), layer.row_token() + 4),
            (std::vector<int32_t>{0, 1, 0, 1}));
  const double want[] = {2.5 * s1 / (s1 + 0.5), 2.5 * 0.5 / (s2 + 0.5), 2.5 * 0.5 / (s1 + 0.5),
                         2.5 * s2 / (s2 + 0.5)};
  for (int a = 0; a < 4; ++a) EXPECT_NEAR(layer.row_gate()[a], want[a], 1e-15) << a;
}

// The layer against the naive per-token forward: sigmoid with and without norm_topk, with
// groups, the gate scale on softmax scores too.
TEST(RouterSigmoid, LayerMatchesNaiveForward) {
  struct Case {
    Score score;
    bool norm;
    double gate_scale;
    int R, M;
    AuxScope scope;
  };
  for (const Case c : {Case{Score::kSigmoid, true, 1.0, 1, 1, AuxScope::kSequence},
                       Case{Score::kSigmoid, false, 2.5, 1, 1, AuxScope::kMicroBatch},
                       Case{Score::kSigmoid, true, 2.5, 4, 2, AuxScope::kSequence},
                       Case{Score::kSoftmax, true, 0.5, 1, 1, AuxScope::kSequence}}) {
    const MoeDims d = layer_dims([&](MoeDims& x) {
      x.z_coeff = c.score == Score::kSoftmax ? 0.01 : 0.0;
      x.aux_scope = c.scope;
      x.score = c.score;
      x.norm_topk = c.norm;
      x.gate_scale = c.gate_scale;
      x.route_groups = c.R;
      x.route_groups_topk = c.M;
    });
    expect_layer_matches_naive(
        d, std::string(to_string(c.score)) + " gate scale " + std::to_string(c.gate_scale));
  }
}

TEST(RouterSigmoid, LayerRefusesAZLoss) {
  MoeDims d{.C = 4, .E = 4, .K = 2, .F = 4, .z_coeff = 1e-3, .score = Score::kSigmoid};
  EXPECT_THROW(MoeLayer<double>{d}, std::logic_error);
  d.z_coeff = 0.0;
  EXPECT_NO_THROW(MoeLayer<double>{d});
  d.gate_scale = 0.0;
  EXPECT_THROW(MoeLayer<double>{d}, std::logic_error);
}

TEST(RouterGroups, LayerRefusesImpossibleGroups) {
  MoeDims d{.C = 4, .E = 8, .K = 4, .F = 4};
  for (const auto& [R, M] : {std::pair{3, 1}, std::pair{4, 5}, std::pair{4, 1}}) {
    d.route_groups = R;  // 8 % 3; M > R; M * E / R = 2 < K
    d.route_groups_topk = M;
    EXPECT_THROW(MoeLayer<double>{d}, std::logic_error) << R << " " << M;
  }
  d.E = 2 * kMaxRouteGroups;
  d.route_groups = d.E;
  d.route_groups_topk = d.K;
  EXPECT_THROW(MoeLayer<double>{d}, std::logic_error) << "more than kMaxRouteGroups";
  d.route_groups = kMaxRouteGroups;
  EXPECT_NO_THROW(MoeLayer<double>{d});
}

}  // namespace
}  // namespace sy
