// The routing probabilities of src/plan/routing.h against hand-computed values and against a
// brute-force enumeration of every selection a token can make (every K-subset of the experts,
// and under group-limited routing every M-subset of the groups first), each equally likely.
#include "src/plan/routing.h"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <functional>
#include <vector>

namespace sy::plan {
namespace {

// Calls f(chosen) for every k-subset of [0, n).
void for_each_subset(int n, int k, const std::function<void(const std::vector<int>&)>& f) {
  std::vector<int> c(static_cast<size_t>(k));
  std::function<void(int, int)> rec = [&](int at, int from) {
    if (at == k) {
      f(c);
      return;
    }
    for (int i = from; i < n; ++i) {
      c[static_cast<size_t>(at)] = i;
      rec(at + 1, i + 1);
    }
  };
  rec(0, 0);
}

// P(a token's experts include one of [first, first + count)) by enumeration: keep M of R groups
// (R = 1: all experts), then K experts of the kept groups' pool.
double brute_hit(int E, int K, int R, int M, int first, int count) {
  const int g = E / R;
  double hits = 0, total = 0;
  for_each_subset(R, M, [&](const std::vector<int>& groups) {
    std::vector<int> pool;
    for (int gr : groups)
      for (int e = gr * g; e < (gr + 1) * g; ++e) pool.push_back(e);
    for_each_subset(static_cast<int>(pool.size()), K, [&](const std::vector<int>& pick) {
      bool hit = false;
      for (int i : pick) {
        const int e = pool[static_cast<size_t>(i)];
        hit = hit || (e >= first && e < first + count);
      }
      hits += hit;
      total += 1;
    });
  });
  return hits / total;
}

TEST(PlanRouting, ChooseRatioByHand) {
  EXPECT_DOUBLE_EQ(choose_ratio(6, 8, 2), 30.0 / 56.0);  // C(6,2)/C(8,2)
  EXPECT_DOUBLE_EQ(choose_ratio(1, 8, 2), 0.0);          // fewer items than draws
  EXPECT_DOUBLE_EQ(choose_ratio(8, 8, 3), 1.0);
}

TEST(PlanRouting, PlainTopKByHandAndByEnumeration) {
  RouteShape r{8, 2, 1, 1};
  EXPECT_NEAR(hit_probability(r, 2), 1.0 - 15.0 / 28.0, 1e-15);  // 1 - C(6,2)/C(8,2)
  EXPECT_DOUBLE_EQ(hit_probability(r, 0), 0.0);
  EXPECT_DOUBLE_EQ(hit_probability(r, 8), 1.0);
  for (int E : {4, 8, 12})
    for (int K = 1; K <= 4; ++K)
      for (int s = 1; s <= E; ++s)
        EXPECT_NEAR(hit_probability({E, K, 1, 1}, s), brute_hit(E, K, 1, 1, 0, s), 1e-12)
            << "E=" << E << " K=" << K << " s=" << s;
}

TEST(PlanRouting, GroupLimitedByHandAndByEnumeration) {
  // E=8 in R=4 groups of 2, M=2 groups kept, K=2.
  const RouteShape r{8, 2, 4, 2};
  // One group: kept with probability 2/4, then 1 - C(2,2)/C(4,2) = 5/6 of the picks touch it.
  EXPECT_NEAR(hit_probability(r, 2), 0.5 * 5.0 / 6.0, 1e-15);
  // Two groups: none kept 1/6 (miss), one kept 4/6 (miss 1/6), both kept (hit): 1 - 10/36.
  EXPECT_NEAR(hit_probability(r, 4), 26.0 / 36.0, 1e-15);
  // One expert inside a group: kept 1/2, then 1 - C(3,2)/C(4,2) = 1/2.
  EXPECT_NEAR(hit_probability(r, 1), 0.25, 1e-15);
  for (auto [E, K, R, M] : std::vector<std::array<int, 4>>{
           {8, 2, 4, 2}, {8, 4, 4, 2}, {12, 3, 4, 3}, {12, 2, 6, 1}, {16, 4, 4, 2}})
    for (int s : {1, E / R, 2 * E / R, E / 2})
      EXPECT_NEAR(hit_probability({E, K, R, M}, s), brute_hit(E, K, R, M, 0, s), 1e-12)
          << "E=" << E << " K=" << K << " R=" << R << " M=" << M << " s=" << s;
}

TEST(PlanRouting, MeasuredLoadsEnterThroughTheSetShare) {
  const RouteShape r{4, 2, 1, 1};
  RoutingStats uniform_loads;
  uniform_loads.load = {{0.25, 0.25, 0.25, 0.25}};
  EXPECT_NEAR(hit_probability(r, uniform_loads, 0, 0, 2), hit_probability(r, 2.0), 1e-15);
  RoutingStats cold;
  cold.load = {{0.0, 0.0, 0.5, 0.5}};  // experts 0 and 1 never chosen
  EXPECT_NEAR(hit_probability(r, cold, 0, 0, 2), 0.0, 1e-15);
  EXPECT_NEAR(hit_probability(r, cold, 0, 2, 2), 1.0, 1e-15);
  EXPECT_NEAR(assignment_share(cold, 4, 7, 2, 2), 1.0, 1e-15);  // layer 7: the last measured
}

TEST(PlanRouting, CoActivationCorrectsTheHitProbability) {
  // K = 2 of E = 4, uniform loads. The set {0, 1} is hit by a token unless it picks {2, 3}.
  const RouteShape r{4, 2, 1, 1};
  RoutingStats s;
  s.load = {{0.25, 0.25, 0.25, 0.25}};
  s.pairs = {std::vector<double>(16, 1.0 / 6.0)};  // uniform: each pair chosen by 1/C(4,2)
  EXPECT_NEAR(hit_probability(r, s, 0, 0, 2), 5.0 / 6.0, 1e-12);
  // Half the tokens pick {0, 1}, half {2, 3}: experts 0 and 1 always travel together, so the
  // set is reached by exactly half the tokens (E[X] = 1, pairs 1/2: P = 1 - 1/2).
  std::vector<double> clustered(16, 0.0);
  clustered[0 * 4 + 1] = clustered[1 * 4 + 0] = 0.5;
  clustered[2 * 4 + 3] = clustered[3 * 4 + 2] = 0.5;
  s.pairs = {clustered};
  EXPECT_NEAR(hit_probability(r, s, 0, 0, 2), 0.5, 1e-12);
}

TEST(PlanRouting, SampledTokensAreCountedDirectly) {
  // E = 4, K = 2, four sampled tokens: {0,1}, {0,2}, {2,3}, {1,3}.
  RoutingStats s;
  s.sample = {{0, 1, 0, 2, 2, 3, 1, 3}};
  s.sample_k = 2;
  // Sets of 2 experts: {0,1} is reached by tokens 1, 2, 4; {2,3} by tokens 2, 3, 4.
  EXPECT_EQ(sample_hit_fractions(s, 4, 0, 2), (std::vector<double>{0.75, 0.75}));
  // Single experts: 0 by 2 tokens, 1 by 2, 2 by 2, 3 by 2.
  EXPECT_EQ(sample_hit_fractions(s, 4, 5, 1), (std::vector<double>{0.5, 0.5, 0.5, 0.5}));
  EXPECT_TRUE(sample_hit_fractions(s, 4, 0, 3).empty());  // sets must tile the experts
  EXPECT_TRUE(sample_hit_fractions(RoutingStats{}, 4, 0, 2).empty());
}

TEST(PlanRouting, AssignmentQuantileByHand) {
  // 100 tokens, K = 2 of E = 4, a set with share 1/4 (one expert): mean 100 * 2 / 4 = 50; per
  // token the hypergeometric variance 2 (1/4)(3/4)(4-2)/(4-1) = 1/4, sd sqrt(25) = 5.
  const AssignmentCount a = assignments(100, 4, 2, 0.25);
  EXPECT_DOUBLE_EQ(a.mean, 50.0);
  EXPECT_NEAR(a.quantile, 50.0 + kBufferQuantileZ * 5.0, 1e-12);
  // All experts: every token gives exactly K, no spread.
  const AssignmentCount all = assignments(100, 4, 2, 1.0);
  EXPECT_DOUBLE_EQ(all.mean, 200.0);
  EXPECT_DOUBLE_EQ(all.quantile, 200.0);
}

}  // namespace
}  // namespace sy::plan
