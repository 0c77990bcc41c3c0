// The incremental-decoding ops (kernels/cuda/ops.h: rope_forward_from, kv_cache_store,
// attention_cached_forward) against their CPU references (cpu::rope_forward_from,
// cpu::attention_cached_forward, and the cache write of src/sample/decoder.cpp written here as a
// host loop), fp32 (1e-5) and bf16 (1e-2). Cache rows no query may read hold NaN on both sides,
// so a kernel reading outside the window fails. Written and compiled, not yet run on a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <stdexcept>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/buffer.h"
#include "kernels/cuda/ops.h"

namespace {

namespace cpu = sy::cpu;
namespace cu = sy::cuda;
using sy::gputest::bf16;
using sy::gputest::close;
using sy::gputest::download_f32;
using sy::gputest::poisoned;
using sy::gputest::random_floats;
using sy::gputest::representable;
using sy::gputest::tol;
using sy::gputest::upload_as;

// W the window, R the cache rows (the decoders keep W + 63; here 2 more than W), C d_model, NH
// heads (HD = 12: not a multiple of the warp).
constexpr int kW = 8, kR = kW + 2, kC = 48, kNH = 4;

template <class T>
class DecodeOps : public ::testing::Test {};
using Types = ::testing::Types<float, bf16>;
TYPED_TEST_SUITE(DecodeOps, Types);

// Positions 0, a few, past a window and far out (the angle's double precision matters there).
TYPED_TEST(DecodeOps, RopeAtAPosition) {
  SY_REQUIRE_GPU();
  using T = TypeParam;
  const int n = 5;
  const double theta = 10000.0;
  std::mt19937 rng(3);
  const auto qkv = representable<T>(random_floats(rng, n * 3 * kC));
  const auto d_qkv = upload_as<T>(qkv);
  for (long p0 : {0L, 3L, 17L, 1000003L}) {
    std::vector<float> out(qkv.size());
    cpu::rope_forward_from(out.data(), qkv.data(), n, kC, kNH, theta, p0);
    auto d_out = poisoned<T>(qkv.size());
    cu::rope_forward_from(d_out.data(), d_qkv.data(), n, kC, kNH, theta, p0, nullptr);
    EXPECT_TRUE(close(download_f32(d_out), out, tol<T>())) << "p0 " << p0;
  }
}

// A sequence fed as the decoders feed it: a prefill of 5 tokens into the empty cache (rows 5..9
// still NaN: the queries must stay inside their window), single tokens up to and past the window
// and the cache (rows wrap), a block of 3 (R - W + 1: the largest the decoders feed past the
// window), then a block of 6 whose rows wrap around the end of the cache (the decoders feed no
// such block, which overwrites rows its first queries read; the kernels must still store and read
// exactly the rows the reference does). After each feed: the cache against the host loop
// (bit-equal), the fed rows' attention output against cpu::attention_cached_forward.
TYPED_TEST(DecodeOps, CacheStoreAndAttentionOverTheWindow) {
  SY_REQUIRE_GPU();
  using T = TypeParam;
  const int C3 = 3 * kC;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> kc(kR * kC, nan), vc(kR * kC, nan);
  auto d_kc = poisoned<T>(kR * kC), d_vc = poisoned<T>(kR * kC);
  std::mt19937 rng(5);
  struct Feed {
    long p0;
    int n;
  };
  for (const Feed f : {Feed{0, 5}, Feed{5, 1}, Feed{6, 1}, Feed{7, 1}, Feed{8, 1}, Feed{9, 1},
                       Feed{10, 1}, Feed{11, 1}, Feed{12, 3}, Feed{15, 6}, Feed{21, 1}}) {
    const auto qkv = representable<T>(random_floats(rng, static_cast<size_t>(f.n) * C3));
    for (int i = 0; i < f.n; ++i) {  // src/sample/decoder.cpp's cache write
      const long row = ((f.p0 + i) % kR) * kC;
      const float* src = qkv.data() + static_cast<long>(i) * C3;
      std::copy(src + kC, src + 2 * kC, kc.begin() + row);
      std::copy(src + 2 * kC, src + 3 * kC, vc.begin() + row);
    }
    std::vector<float> out(static_cast<size_t>(f.n) * kC), scratch(kW);
    cpu::attention_cached_forward(out.data(), scratch.data(), qkv.data(), C3, kc.data(), vc.data(),
                                  kW, kR, f.p0, f.n, kC, kNH);

    const auto d_qkv = upload_as<T>(qkv);
    auto d_out = poisoned<T>(static_cast<size_t>(f.n) * kC);
    auto d_scratch = poisoned<float>(cu::attention_cached_scratch(f.n, kNH, kW));
    cu::kv_cache_store(d_kc.data(), d_vc.data(), d_qkv.data(), kR, f.p0, f.n, kC, nullptr);
    const auto got_k = download_f32(d_kc), got_v = download_f32(d_vc);
    for (size_t j = 0; j < kc.size(); ++j) {  // bit-equal, NaN where neither side wrote
      ASSERT_TRUE(got_k[j] == kc[j] || (std::isnan(got_k[j]) && std::isnan(kc[j])))
          << "k at p0 " << f.p0 << " element " << j << ": " << got_k[j] << " vs " << kc[j];
      ASSERT_TRUE(got_v[j] == vc[j] || (std::isnan(got_v[j]) && std::isnan(vc[j])))
          << "v at p0 " << f.p0 << " element " << j << ": " << got_v[j] << " vs " << vc[j];
    }
    cu::attention_cached_forward(d_out.data(), d_scratch.data(), d_qkv.data(), C3, d_kc.data(),
                                 d_vc.data(), kW, kR, f.p0, f.n, kC, kNH, nullptr);
    EXPECT_TRUE(close(download_f32(d_out), out, tol<T>())) << "p0 " << f.p0 << " n " << f.n;
  }
}

// Head dims whose accumulators (16 bytes per head dim) and the kernel's 256 bytes of static
// shared memory pass the 48 KiB a launch gets without the kernel's opt-in: 3072 (12 KiB short of
// 48 KiB in the accumulators alone, past it with the static bytes: the opt-in was asked only
// past 48 KiB of accumulators, so head dims 3058..3072 failed the launch) and 3200. A prefill of
// 3 into a window of 4.
TYPED_TEST(DecodeOps, AttentionWithAHeadPastTheDefaultSharedMemory) {
  SY_REQUIRE_GPU();
  using T = TypeParam;
  for (const int HD : {3072, 3200}) {
    SCOPED_TRACE(HD);
    const int W = 4, NH = 2, C = NH * HD, C3 = 3 * C, n = 3;
    std::mt19937 rng(7);
    const auto qkv = representable<T>(random_floats(rng, static_cast<size_t>(n) * C3));
    const float nan = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> kc(static_cast<size_t>(W) * C, nan), vc(kc.size(), nan);
    for (int i = 0; i < n; ++i) {  // src/sample/decoder.cpp's cache write
      const float* src = qkv.data() + static_cast<long>(i) * C3;
      std::copy(src + C, src + 2 * C, kc.begin() + static_cast<long>(i) * C);
      std::copy(src + 2 * C, src + 3 * C, vc.begin() + static_cast<long>(i) * C);
    }
    std::vector<float> out(static_cast<size_t>(n) * C), scratch(W);
    cpu::attention_cached_forward(out.data(), scratch.data(), qkv.data(), C3, kc.data(), vc.data(),
                                  W, W, 0, n, C, NH);
    const auto d_qkv = upload_as<T>(qkv);
    auto d_kc = poisoned<T>(kc.size()), d_vc = poisoned<T>(vc.size());
    auto d_out = poisoned<T>(out.size());
    auto d_scratch = poisoned<float>(cu::attention_cached_scratch(n, NH, W));
    cu::kv_cache_store(d_kc.data(), d_vc.data(), d_qkv.data(), W, 0, n, C, nullptr);
    cu::attention_cached_forward(d_out.data(), d_scratch.data(), d_qkv.data(), C3, d_kc.data(),
                                 d_vc.data(), W, W, 0, n, C, NH, nullptr);
    EXPECT_TRUE(close(download_f32(d_out), out, tol<T>()));
  }
}

TEST(DecodeOpsChecks, StoreRefusesMoreRowsThanTheCache) {
  SY_REQUIRE_GPU();
  auto kc = poisoned<float>(kW * kC), vc = poisoned<float>(kW * kC);
  auto qkv = poisoned<float>((kW + 1) * 3 * kC);
  EXPECT_THROW(cu::kv_cache_store(kc.data(), vc.data(), qkv.data(), kW, 0, kW + 1, kC, nullptr),
               std::invalid_argument);
  // A cache of fewer rows than the window is refused by the attention, as on the CPU.
  auto out = poisoned<float>(kC);
  auto scratch = poisoned<float>(cu::attention_cached_scratch(1, kNH, kW));
  EXPECT_THROW(
      cu::attention_cached_forward(out.data(), scratch.data(), qkv.data(), 3 * kC, kc.data(),
                                   vc.data(), kW, kW - 1, 0, 1, kC, kNH, nullptr),
      std::invalid_argument);
}

}  // namespace
