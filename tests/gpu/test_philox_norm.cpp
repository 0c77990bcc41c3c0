// cuRAND's device Philox against kernels/cpu/philox.h (the counter mapping of init.h), the GPU
// init transform against philox::normal4 bit for bit, and the gradient-norm reduction against a
// host double sum.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/cpu/philox.h"
#include "kernels/cuda/buffer.h"
#include "kernels/cuda/init.h"
#include "kernels/cuda/optim.h"

namespace {

namespace cu = sy::cuda;
namespace philox = sy::philox;
using sy::gputest::poisoned;
using sy::gputest::random_floats;

// Seeds and streams with both 32-bit halves non-zero, and blocks past 2^32 so the carry into the
// counter's second word is exercised.
struct PhiloxCase {
  uint64_t seed, stream, first_block;
};
const PhiloxCase kCases[] = {{0, 0, 0},
                             {1234, 0x0123456789abcdefull, 5},
                             {0xfedcba9876543210ull, 42, 0xfffffff0ull},
                             {7, 0xffffffffffffffffull, 0x100000003ull}};

TEST(CurandPhilox, RawBlocksMatchPhiloxHeader) {
  SY_REQUIRE_GPU();
  const size_t nb = 40;
  for (const PhiloxCase& c : kCases) {
    auto d_words = poisoned<uint32_t>(4 * nb);
    cu::philox_blocks(d_words.data(), c.seed, c.stream, c.first_block, nb, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    const auto words = d_words.download();
    for (size_t i = 0; i < nb; ++i) {
      const uint64_t b = c.first_block + i;
      const philox::Counter ctr{{static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32),
                                 static_cast<uint32_t>(c.stream),
                                 static_cast<uint32_t>(c.stream >> 32)}};
      const philox::Counter want = philox::philox4x32(ctr, philox::key_from_seed(c.seed));
      for (int w = 0; w < 4; ++w)
        ASSERT_EQ(words[4 * i + w], want.v[w]) << "seed " << c.seed << " block " << b;
    }
  }
}

// init_normal over ranges that start and end mid-block equals (float)(std * normal4) exactly.
TEST(CurandPhilox, InitNormalBitExact) {
  SY_REQUIRE_GPU();
  const double init_std = 0.02 / std::sqrt(8.0);
  for (const PhiloxCase& c : kCases) {
    const size_t first = 4 * (c.first_block % 1000) + 3, count = 1001;
    auto d = poisoned<float>(count);
    cu::init_normal(d.data(), c.seed, c.stream, init_std, first, count, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    const auto got = d.download();
    size_t wrong = 0;
    for (size_t i = 0; i < count; ++i) {
      const size_t idx = first + i;
      double z[4];
      philox::normal4(c.seed, c.stream, idx / 4, z);
      const float want = static_cast<float>(init_std * z[idx % 4]);
      uint32_t gb = 0, wb = 0;
      std::memcpy(&gb, &got[i], 4);
      std::memcpy(&wb, &want, 4);
      wrong += gb != wb;
    }
    EXPECT_EQ(wrong, 0u) << "seed " << c.seed << " stream " << c.stream;
  }
}

TEST(CurandPhilox, Fill) {
  SY_REQUIRE_GPU();
  auto d = poisoned<float>(777);
  cu::fill(d.data(), 1.0f, 777, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(d.download(), std::vector<float>(777, 1.0f));
}

TEST(GradNorm, SquaredSumMatchesHostDouble) {
  SY_REQUIRE_GPU();
  std::mt19937 rng(21);
  for (size_t n : {size_t{1}, size_t{255}, size_t{100003}}) {
    const auto g = random_floats(rng, n, -3.0f, 3.0f);
    double want = 0.0;
    for (float x : g) want += static_cast<double>(x) * x;
    auto d_g = cu::to_device(g);
    auto d_out = poisoned<double>(1);
    auto d_scratch = poisoned<double>(cu::kNormBlocks);
    cu::grad_sq_sum(d_out.data(), d_scratch.data(), d_g.data(), n, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_NEAR(d_out.download()[0], want, 1e-12 * want) << "n " << n;
  }
}

}  // namespace
