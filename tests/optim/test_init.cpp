// The layout-independent initialisation (SPEC 2): statistics, kinds, the documented transform
// rebuilt from raw Philox words with libm, and slices of a full init.
#include "src/model/init.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/philox.h"
#include "src/model/params.h"

namespace {

using sy::ParamKind;
using sy::ParamSpec;
using sy::ParamTable;

ParamSpec matrix(const std::string& name, int64_t rows, int64_t cols, double std) {
  ParamTable t;
  t.add(name, {rows, cols}, ParamKind::kMatrix, std);
  return t.specs()[0];
}

struct Moments {
  double mean, std;
};
template <class T>
Moments moments(const T* x, size_t n) {
  double s = 0, s2 = 0;
  for (size_t i = 0; i < n; ++i) {
    s += static_cast<double>(x[i]);
    s2 += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  }
  const double mean = s / static_cast<double>(n);
  return {mean, std::sqrt(s2 / static_cast<double>(n) - mean * mean)};
}

TEST(Init, MatrixIsNormalWithInitStd) {
  const ParamSpec spec = matrix("model/embed", 512, 512, 0.02);
  std::vector<float> w(spec.numel);
  sy::init_param_range(w.data(), spec, 1234, 0, spec.numel);
  const Moments mo = moments(w.data(), w.size());
  EXPECT_NEAR(mo.mean, 0.0, 2e-4);  // standard error 0.02 / 512 = 4e-5
  EXPECT_NEAR(mo.std, 0.02, 2e-4);  // relative standard error 1/sqrt(2n) = 0.14%
  int within = 0;
  for (float x : w) within += std::fabs(x) < 0.02f ? 1 : 0;
  EXPECT_NEAR(within / static_cast<double>(w.size()), 0.682689, 0.004);
}

TEST(Init, WholeModelKindsAndScaledOutputProjections) {
  sy::Config cfg;
  cfg.model.n_layers = 2;
  cfg.model.d_model = 128;
  cfg.moe.ffn_hidden = 256;
  const ParamTable table = sy::make_param_table(cfg);
  std::vector<float> params(table.total_numel(), -7.0f);
  sy::init_params(params.data(), table, 99);
  const double out_std = 0.02 / std::sqrt(2.0 * 2);  // SPEC 2: 1 / sqrt(2 L)
  for (const ParamSpec& s : table.specs()) {
    const float* x = params.data() + s.offset;
    if (s.kind == ParamKind::kGain) {
      for (size_t i = 0; i < s.numel; ++i) ASSERT_EQ(x[i], 1.0f) << s.name;
    } else if (s.kind == ParamKind::kBias) {
      for (size_t i = 0; i < s.numel; ++i) ASSERT_EQ(x[i], 0.0f) << s.name;
    } else {
      const bool is_out = s.name.ends_with("/wo") || s.name.ends_with("/w2");
      const double want = is_out ? out_std : 0.02;
      const Moments mo = moments(x, s.numel);
      // 4 standard errors of a sample std (want / sqrt(2n)) and of a sample mean (want / sqrt(n))
      const double tol = 4.0 * want / std::sqrt(2.0 * static_cast<double>(s.numel));
      EXPECT_NEAR(mo.std, want, tol) << s.name;
      EXPECT_NEAR(mo.mean, 0.0, 4.0 * want / std::sqrt(static_cast<double>(s.numel))) << s.name;
    }
  }
}

// Element i of a matrix, rebuilt from the header's description with libm in long double.
double documented_value(uint64_t seed, const std::string& name, double std, uint64_t i) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a 64
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  const uint64_t block = i / 4;
  const sy::philox::Counter ctr{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                                 static_cast<uint32_t>(h), static_cast<uint32_t>(h >> 32)}};
  const sy::philox::Key key{{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}};
  const sy::philox::Counter w = sy::philox::philox4x32(ctr, key, 10);
  auto u = [](uint32_t x) { return (static_cast<long double>(x) + 0.5L) / 4294967296.0L; };
  const size_t lane = i % 4, pair = lane / 2;
  const long double r = std::sqrt(-2.0L * std::log(u(w.v[2 * pair])));
  const long double phi = 6.283185307179586476925286766559L * u(w.v[2 * pair + 1]);
  const long double z = (lane % 2 == 0) ? r * std::cos(phi) : r * std::sin(phi);
  return static_cast<double>(std * z);
}

TEST(Init, ElementsFollowTheDocumentedTransform) {
  const std::string name = "model/layers/1/moe/w1";
  const ParamSpec spec = matrix(name, 37, 11, 0.015);
  const uint64_t seed = 0xfeedface12345678ull;
  std::vector<double> wd(spec.numel);
  std::vector<float> wf(spec.numel);
  sy::init_param_range(wd.data(), spec, seed, 0, spec.numel);
  sy::init_param_range(wf.data(), spec, seed, 0, spec.numel);
  EXPECT_EQ(sy::param_stream_id(name), sy::philox::fnv1a64(name.data(), name.size()));
  for (size_t i = 0; i < spec.numel; ++i) {
    EXPECT_NEAR(wd[i], documented_value(seed, name, 0.015, i), 1e-15) << i;
    // The float value is the double value rounded once.
    EXPECT_EQ(wf[i], static_cast<float>(wd[i])) << i;
  }
}

TEST(Init, RangesAreSlicesOfTheFullInit) {
  const ParamSpec spec = matrix("model/layers/0/attn/wqkv", 13, 39, 0.02);
  std::vector<float> full(spec.numel);
  sy::init_param_range(full.data(), spec, 7, 0, spec.numel);
  // Unaligned starts and ends, single elements, empty, and the tail.
  const size_t cases[][2] = {
      {0, 1}, {1, 2}, {3, 7}, {4, 4}, {5, 0}, {101, 57}, {spec.numel - 3, 3}, {spec.numel, 0}};
  for (const auto& c : cases) {
    std::vector<float> part(c[1] + 1, -1.0f);
    sy::init_param_range(part.data(), spec, 7, c[0], c[1]);
    for (size_t i = 0; i < c[1]; ++i) ASSERT_EQ(part[i], full[c[0] + i]) << c[0] << "+" << i;
    EXPECT_EQ(part[c[1]], -1.0f) << "wrote past count at " << c[0];
  }
  // Any split into contiguous shards (as ranks would own them) reassembles the full tensor.
  std::mt19937 rng(2);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> joined(spec.numel, 0.0f);
    size_t pos = 0;
    while (pos < spec.numel) {
      const size_t len = std::min<size_t>(spec.numel - pos, 1 + rng() % 60);
      sy::init_param_range(joined.data() + pos, spec, 7, pos, len);
      pos += len;
    }
    ASSERT_EQ(joined, full);
  }
}

TEST(Init, ColumnBlockOfAMatrixMatchesFullInit) {
  // A column block [rows, c0:c1) as a tensor-parallel rank would own it: row by row ranges.
  const int64_t rows = 16, cols = 24, c0 = 8, c1 = 16;
  const ParamSpec spec = matrix("model/layers/0/attn/wo", rows, cols, 0.01);
  std::vector<float> full(spec.numel);
  sy::init_param_range(full.data(), spec, 5, 0, spec.numel);
  std::vector<float> shard(static_cast<size_t>(rows * (c1 - c0)));
  for (int64_t r = 0; r < rows; ++r)
    sy::init_param_range(shard.data() + r * (c1 - c0), spec, 5, static_cast<size_t>(r * cols + c0),
                         static_cast<size_t>(c1 - c0));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = c0; c < c1; ++c)
      ASSERT_EQ(shard[static_cast<size_t>(r * (c1 - c0) + c - c0)],
                full[static_cast<size_t>(r * cols + c)]);
}

size_t count_equal(const std::vector<float>& a, const std::vector<float>& b) {
  size_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += a[i] == b[i] ? 1 : 0;
  return n;
}

TEST(Init, NamesAndSeedsGiveDifferentValues) {
  const ParamSpec a = matrix("model/layers/0/moe/w1", 32, 32, 0.02);
  const ParamSpec b = matrix("model/layers/0/moe/w3", 32, 32, 0.02);
  std::vector<float> va(a.numel), vb(b.numel), va2(a.numel), va_again(a.numel);
  sy::init_param_range(va.data(), a, 1, 0, a.numel);
  sy::init_param_range(vb.data(), b, 1, 0, b.numel);
  sy::init_param_range(va2.data(), a, 2, 0, a.numel);
  sy::init_param_range(va_again.data(), a, 1, 0, a.numel);
  EXPECT_LT(count_equal(va, vb), 3u);
  EXPECT_LT(count_equal(va, va2), 3u);
  EXPECT_EQ(va, va_again);  // deterministic
  // Seeds differing only in the high word differ too (both key words are used).
  std::vector<float> hi(a.numel);
  sy::init_param_range(hi.data(), a, 1 + (uint64_t{1} << 32), 0, a.numel);
  EXPECT_LT(count_equal(va, hi), 3u);
}

TEST(Init, OutOfRangeThrows) {
  const ParamSpec spec = matrix("m", 4, 4, 0.02);
  std::vector<float> buf(32);
  EXPECT_THROW(sy::init_param_range(buf.data(), spec, 1, 10, 7), std::logic_error);
  EXPECT_THROW(sy::init_param_range(buf.data(), spec, 1, 17, 0), std::logic_error);
  EXPECT_NO_THROW(sy::init_param_range(buf.data(), spec, 1, 16, 0));
}

}  // namespace
