// The batch order (SPEC section 3 "Data order"): a pure function of (seed, step, data), identical
// however a step's global batch is cut into pieces (the layout), every window once per epoch.
// The train split here holds token i at position i, so each row names its own window.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "src/data/loader.h"

namespace sy {
namespace {

std::vector<int32_t> positions(int64_t n) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

// The whole global batch of `step` in one call: [GB, T + 1].
std::vector<int32_t> whole_batch(BatchLoader& l, int64_t step, int64_t gb, int64_t T) {
  std::vector<int32_t> out(static_cast<size_t>(gb * (T + 1)));
  l.fill(step, 0, gb, out.data());
  return out;
}

TEST(Loader, RowsAreWindowsOfTPlusOneTokensAtStrideT) {
  const int64_t T = 5, GB = 4;
  const auto train = positions(103);  // (103 - 1) / 5 = 20 windows; the last 2 tokens unused
  BatchLoader l(train, T, GB, 42);
  EXPECT_EQ(l.num_windows(), 20);
  for (int64_t step = 0; step < 12; ++step) {
    const auto b = whole_batch(l, step, GB, T);
    for (int64_t j = 0; j < GB; ++j) {
      const int32_t first = b[static_cast<size_t>(j * (T + 1))];
      EXPECT_EQ(first % T, 0) << "row starts at a multiple of T";
      EXPECT_EQ(first / T, l.window_of(step, j));
      for (int64_t t = 0; t <= T; ++t)
        EXPECT_EQ(b[static_cast<size_t>(j * (T + 1) + t)], first + t);  // contiguous T+1 tokens
    }
  }
}

TEST(Loader, PiecesOfAStepEqualTheWholeStepInAnyLayout) {
  const int64_t T = 7, GB = 12;
  const auto train = positions(7 * 50 + 1);  // 50 windows: steps straddle epoch boundaries
  std::mt19937 rng(5);
  for (int64_t step : {0, 3, 4, 9, 17, 123}) {
    BatchLoader ref(train, T, GB, 99);
    const auto want = whole_batch(ref, step, GB, T);
    // A fresh loader per layout (no shared cache), pieces in random order and random sizes, the
    // way data-parallel ranks and micro-batches would ask for them.
    for (int trial = 0; trial < 5; ++trial) {
      BatchLoader l(train, T, GB, 99);
      std::vector<std::pair<int64_t, int64_t>> pieces;
      for (int64_t first = 0; first < GB;) {
        const int64_t n = std::min<int64_t>(GB - first, 1 + static_cast<int64_t>(rng() % 5));
        pieces.push_back({first, n});
        first += n;
      }
      std::shuffle(pieces.begin(), pieces.end(), rng);
      std::vector<int32_t> got(want.size(), -1);
      for (auto [first, n] : pieces) l.fill(step, first, n, got.data() + first * (T + 1));
      EXPECT_EQ(got, want) << "step " << step << " trial " << trial;
    }
  }
}

TEST(Loader, EveryWindowOncePerEpoch) {
  const int64_t T = 3, GB = 6, W = 30;  // 5 steps per epoch exactly
  const auto train = positions(T * W + 1);
  BatchLoader l(train, T, GB, 7);
  ASSERT_EQ(l.num_windows(), W);
  std::vector<std::vector<int64_t>> epochs;
  for (int64_t e = 0; e < 4; ++e) {
    std::vector<int64_t> seen;
    for (int64_t step = e * 5; step < e * 5 + 5; ++step)
      for (int64_t j = 0; j < GB; ++j) seen.push_back(whole_batch(l, step, GB, T)[j * (T + 1)] / T);
    std::vector<int64_t> sorted = seen;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> all(W);
    std::iota(all.begin(), all.end(), 0);
    EXPECT_EQ(sorted, all) << "epoch " << e;
    epochs.push_back(seen);
  }
  // Each epoch is shuffled afresh, and not left in file order.
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  std::vector<int64_t> identity(W);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_NE(epochs[0], identity);
}

TEST(Loader, WindowsCountedAcrossEpochBoundaryWithUnevenSteps) {
  // W = 7 windows, GB = 3: the global index g = 3 t + j walks epochs of 7 regardless of steps.
  const int64_t T = 2, GB = 3, W = 7;
  const auto train = positions(T * W + 1);
  BatchLoader l(train, T, GB, 3);
  std::vector<int64_t> order;
  for (int64_t step = 0; step < 7; ++step)  // 21 sequences = 3 full epochs
    for (int64_t j = 0; j < GB; ++j) order.push_back(l.window_of(step, j));
  for (int e = 0; e < 3; ++e) {
    std::set<int64_t> s(order.begin() + e * W, order.begin() + (e + 1) * W);
    EXPECT_EQ(s.size(), static_cast<size_t>(W)) << "epoch " << e;
    EXPECT_EQ(std::vector<int64_t>(order.begin() + e * W, order.begin() + (e + 1) * W),
              epoch_permutation(3, e, W));
  }
}

TEST(Loader, DeterministicAndSeedDependent) {
  const int64_t T = 4, GB = 8;
  const auto train = positions(4 * 200 + 1);
  BatchLoader a(train, T, GB, 1), b(train, T, GB, 1), c(train, T, GB, 2);
  // b visits the steps backwards: the batch depends on the step, not on the call history.
  std::vector<std::vector<int32_t>> fwd, bwd(10);
  for (int64_t s = 0; s < 10; ++s) fwd.push_back(whole_batch(a, s, GB, T));
  for (int64_t s = 9; s >= 0; --s) bwd[s] = whole_batch(b, s, GB, T);
  EXPECT_EQ(fwd, bwd);
  for (int64_t s = 1; s < 10; ++s) EXPECT_NE(fwd[s], fwd[s - 1]) << "steps " << s - 1 << ", " << s;
  int same = 0;
  for (int64_t s = 0; s < 10; ++s) same += whole_batch(c, s, GB, T) == fwd[s];
  EXPECT_EQ(same, 0) << "another seed gives other batches";
}

TEST(Loader, PermutationIsAPermutationAndFixed) {
  for (int64_t n : {1, 2, 3, 10, 1000}) {
    auto p = epoch_permutation(11, 0, n);
    std::sort(p.begin(), p.end());
    for (int64_t i = 0; i < n; ++i) EXPECT_EQ(p[i], i);
  }
  EXPECT_EQ(epoch_permutation(11, 4, 50), epoch_permutation(11, 4, 50));
  EXPECT_NE(epoch_permutation(11, 4, 50), epoch_permutation(11, 5, 50));
  // Roughly uniform: over many epochs each window lands in slot 0 about equally often.
  std::vector<int> first(8);
  for (int64_t e = 0; e < 8000; ++e) ++first[static_cast<size_t>(epoch_permutation(5, e, 8)[0])];
  for (int f : first) EXPECT_NEAR(f, 1000, 150);
}

TEST(Loader, ValidationWindows) {
  EXPECT_EQ(num_val_windows(0, 4), 0);
  EXPECT_EQ(num_val_windows(4, 4), 0);  // needs T + 1 = 5 tokens
  EXPECT_EQ(num_val_windows(5, 4), 1);
  EXPECT_EQ(num_val_windows(8, 4), 1);  // window 1 would need tokens 4..8
  EXPECT_EQ(num_val_windows(9, 4), 2);
  EXPECT_EQ(num_val_windows(101, 10), 10);
}

// SPEC section 3: validation window i = tokens[i*T .. i*T+T] (T + 1 tokens at stride T, in file
// order, sharing one token with the next); fill_val_windows writes windows first .. first+num-1.
TEST(Loader, ValidationWindowsAreAtStrideTInFileOrder) {
  const int64_t T = 4;
  const auto val = positions(17);  // 4 windows: tokens 0..4, 4..8, 8..12, 12..16
  ASSERT_EQ(num_val_windows(17, T), 4);
  std::vector<int32_t> got(3 * (T + 1), -1);
  fill_val_windows(val, T, 1, 3, got.data());
  EXPECT_EQ(got, (std::vector<int32_t>{4, 5, 6, 7, 8, 8, 9, 10, 11, 12, 12, 13, 14, 15, 16}));
  EXPECT_THROW(fill_val_windows(val, T, 2, 3, got.data()), std::exception)
      << "window 4 is past the end";
}

// A run resumed with another global batch continues the batch order where the checkpoint left
// it: 3 steps of 8 then 4 steps of 20 see the first 24 + 80 sequences of the stream, each once,
// in stream order. The reference is the stream itself, read one sequence per step by a loader
// of global batch 1. Before, step t of the new run started at t * 20: sequences 24..59 were
// skipped and the token count was 7 * 20 sequences.
TEST(Loader, AResumeWithAnotherGlobalBatchContinuesTheStream) {
  const int64_t T = 4;
  const auto train = positions(4 * 30 + 1);  // 30 windows: the run crosses 3 epoch boundaries
  BatchLoader stream(train, T, 1, 7);
  BatchLoader first(train, T, 8, 7);
  std::vector<int64_t> seen;
  for (int64_t step = 0; step < 3; ++step)
    for (int64_t j = 0; j < 8; ++j) seen.push_back(first.window_of(step, j));
  const LoaderState at = first.state(3);
  EXPECT_EQ(at.consumed, 24);
  EXPECT_EQ(first.tokens_before(3), 24 * T);

  BatchLoader resumed(train, T, 20, 7);
  resumed.resume_at(at.step, at.consumed, first.tokens_before(3));
  for (int64_t step = 3; step < 7; ++step)
    for (int64_t j = 0; j < 20; ++j) seen.push_back(resumed.window_of(step, j));
  ASSERT_EQ(seen.size(), 104u);
  for (int64_t g = 0; g < 104; ++g) EXPECT_EQ(seen[static_cast<size_t>(g)], stream.window_of(g, 0));
  EXPECT_EQ(resumed.state(7).consumed, 104);
  EXPECT_EQ(resumed.tokens_before(7), 104 * T);
  EXPECT_ANY_THROW(resumed.window_of(2, 0));  // before the resumed step
}

}  // namespace
}  // namespace sy
