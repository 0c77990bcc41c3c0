// Philox4x32 against the published known-answer vectors, and the exactly reproducible
// log/sincos/Box-Muller transforms against libm (long double) and distribution statistics.
#include "kernels/cpu/philox.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace {

using sy::philox::Counter;
using sy::philox::Key;

struct Kat {
  int rounds;
  Counter ctr;
  Key key;
  Counter expected;
};

// Random123's tests/kat_vectors (DEShawResearch/random123), the philox4x32 lines:
// "name rounds ctr[4] key[2] expected[4]", all hex words.
const Kat kKats[] = {
    {10, {{0, 0, 0, 0}}, {{0, 0}}, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}}},
    {10,
     {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}},
     {{0xffffffff, 0xffffffff}},
     {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}}},
    {10,
     {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}},
     {{0xa4093822, 0x299f31d0}},
     {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}}},
    {7, {{0, 0, 0, 0}}, {{0, 0}}, {{0x5f6fb709, 0x0d893f64, 0x4f121f81, 0x4f730a48}}},
    {7,
     {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}},
     {{0xffffffff, 0xffffffff}},
     {{0x5207ddc2, 0x45165e59, 0x4d8ee751, 0x8c52f662}}},
    {7,
     {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}},
     {{0xa4093822, 0x299f31d0}},
     {{0x4dfccaba, 0x190a87f0, 0xc47362ba, 0xb6b5242a}}},
};

TEST(Philox, KnownAnswerVectors) {
  for (const Kat& k : kKats) {
    const Counter out = sy::philox::philox4x32(k.ctr, k.key, k.rounds);
    for (int i = 0; i < 4; ++i)
      EXPECT_EQ(out.v[i], k.expected.v[i]) << "rounds " << k.rounds << " word " << i;
  }
}

TEST(Philox, DefaultIsTenRounds) {
  const Counter out = sy::philox::philox4x32(kKats[2].ctr, kKats[2].key);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out.v[i], kKats[2].expected.v[i]);
}

// cuRAND's host Philox4x32-10 generator (curandCreateGeneratorHost, curandGenerate of 8 words),
// recorded once from libcurand 10 (CUDA 13.0) on this machine, an implementation independent of
// ours. Seed 0: words 0..3 are the all-zero vector above; words 4..7 are the block at counter
// {0,0,1,0} (cuRAND's host generator lays its output out over subsequences, counter words 2-3).
// Seed 0x0000000200000001: words 0..3 are the block at counter 0, which pins the seed -> key
// mapping (low word first).
TEST(Philox, MatchesCurandHostGenerator) {
  const Counter second =
      sy::philox::philox4x32(Counter{{0, 0, 1, 0}}, sy::philox::key_from_seed(0));
  const uint32_t expected_second[4] = {0x844515e1, 0xf08d6eaa, 0x0f19c053, 0x83f875f0};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(second.v[i], expected_second[i]);

  const Counter seeded = sy::philox::philox4x32(Counter{{0, 0, 0, 0}},
                                                sy::philox::key_from_seed(0x0000000200000001ull));
  const uint32_t expected_seeded[4] = {0x0598de3a, 0x98d2802e, 0x270f8f9e, 0xeab709d3};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(seeded.v[i], expected_seeded[i]);
}

TEST(Philox, KeyFromSeedIsLowWordFirst) {
  const Key k = sy::philox::key_from_seed(0x0123456789abcdefull);
  EXPECT_EQ(k.v[0], 0x89abcdefu);
  EXPECT_EQ(k.v[1], 0x01234567u);
}

TEST(Philox, Fnv1a64ReferenceVectors) {
  auto h = [](const std::string& s) { return sy::philox::fnv1a64(s.data(), s.size()); };
  EXPECT_EQ(h(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(h("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(h("foobar"), 0x85944171f73967e8ull);
}

// Words to probe: the extremes, the quarter-turn boundaries and seeded random words.
std::vector<uint32_t> probe_words() {
  std::vector<uint32_t> xs = {0u,          1u,          2u,          0x3fffffffu,
                              0x40000000u, 0x7fffffffu, 0x80000000u, 0xbfffffffu,
                              0xc0000000u, 0xfffffffeu, 0xffffffffu, 0x5a827999u};
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) xs.push_back(static_cast<uint32_t>(rng()));
  return xs;
}

long double u01_ld(uint32_t x) {
  return (static_cast<long double>(x) + 0.5L) / 4294967296.0L;
}

TEST(Philox, U01IsExactAndOpen) {
  EXPECT_EQ(sy::philox::u01(0), std::ldexp(1.0, -33));
  EXPECT_EQ(sy::philox::u01(0xffffffffu), 1.0 - std::ldexp(1.0, -33));
  EXPECT_EQ(sy::philox::u01(0x80000000u), 0.5 + std::ldexp(1.0, -33));
}

TEST(Philox, LogMatchesLibm) {
  double worst = 0.0;
  for (uint32_t x : probe_words()) {
    const long double ref = std::log(u01_ld(x));
    const double got = sy::philox::log_u01(x);
    const double rel = static_cast<double>(std::fabs((got - ref) / ref));
    worst = std::max(worst, rel);
    ASSERT_LT(rel, 1e-15) << "x = " << x;
  }
  RecordProperty("worst_rel_err", std::to_string(worst));
}

TEST(Philox, SinCosMatchLibm) {
  const long double two_pi = 6.283185307179586476925286766559L;
  for (uint32_t x : probe_words()) {
    double s = 0.0, c = 0.0;
    sy::philox::sincos_2pi_u01(x, &s, &c);
    const long double a = two_pi * u01_ld(x);
    ASSERT_NEAR(s, static_cast<double>(std::sin(a)), 1e-15) << "x = " << x;
    ASSERT_NEAR(c, static_cast<double>(std::cos(a)), 1e-15) << "x = " << x;
  }
}

// normal4's documented layout, rebuilt from the raw Philox words with libm's Box-Muller.
TEST(Philox, Normal4LayoutMatchesDocumentedTransform) {
  std::mt19937_64 rng(11);
  const long double two_pi = 6.283185307179586476925286766559L;
  for (int trial = 0; trial < 200; ++trial) {
    const uint64_t seed = rng(), stream = rng(), block = rng();
    double z[4];
    sy::philox::normal4(seed, stream, block, z);
    const Counter ctr{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                       static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)}};
    const Key key{{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}};
    const Counter w = sy::philox::philox4x32(ctr, key, 10);
    for (int p = 0; p < 2; ++p) {
      const long double rho = std::sqrt(-2.0L * std::log(u01_ld(w.v[2 * p])));
      const long double phi = two_pi * u01_ld(w.v[2 * p + 1]);
      EXPECT_NEAR(z[2 * p], static_cast<double>(rho * std::cos(phi)), 1e-14);
      EXPECT_NEAR(z[2 * p + 1], static_cast<double>(rho * std::sin(phi)), 1e-14);
    }
  }
}

TEST(Philox, Normal4Statistics) {
  const int blocks = 50000;
  double sum = 0, sum2 = 0, sum4 = 0, cross = 0;
  int within1 = 0;
  for (int b = 0; b < blocks; ++b) {
    double z[4];
    sy::philox::normal4(42, 0x1234, static_cast<uint64_t>(b), z);
    for (double v : z) {
      sum += v;
      sum2 += v * v;
      sum4 += v * v * v * v;
      within1 += std::fabs(v) < 1.0 ? 1 : 0;
    }
    cross += z[0] * z[1] + z[2] * z[3];
  }
  const double n = 4.0 * blocks;
  EXPECT_NEAR(sum / n, 0.0, 0.01);  // standard error 1/sqrt(n) = 0.0022
  EXPECT_NEAR(sum2 / n, 1.0, 0.015);
  EXPECT_NEAR(sum4 / n, 3.0, 0.08);  // kurtosis of a normal; its std error ~ 0.022
  EXPECT_NEAR(within1 / n, 0.682689, 0.005);
  EXPECT_NEAR(cross / (n / 2), 0.0, 0.01);  // the two normals of one pair are uncorrelated
}

}  // namespace
