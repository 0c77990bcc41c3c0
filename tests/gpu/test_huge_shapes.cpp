// Shapes whose flat element index passes 2^31 (an int32 index would wrap): the row gather of the
// dispatch (A*C), the combine (N*C) and the cross-entropy over a large vocabulary (N*V), fp32
// (~9 GB per buffer; skipped on a GPU with less free memory). Inputs are filled on the device by
// the Philox init (init_normal, std 1), so the host knows every input element without copying
// gigabytes (philox::normal4); the rows checked straddle the 2^31 boundary and end the buffer.
// Excluded from the compute-sanitizer runs (tests/gpu/tests.cmake): too large for its shadow
// memory and too slow under it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/cpu/philox.h"
#include "kernels/cuda/buffer.h"
#include "kernels/cuda/init.h"
#include "kernels/cuda/moe_ops.h"
#include "kernels/cuda/ops.h"

namespace {

namespace cu = sy::cuda;
using sy::cuda::DeviceBuffer;

constexpr uint64_t kSeed = 2024;
constexpr int64_t kInt32Past = int64_t{1} << 31;

// Element i of a buffer filled by init_normal(kSeed, stream, 1.0, 0, ...).
float input_value(uint64_t stream, uint64_t i) {
  double z[4];
  sy::philox::normal4(kSeed, stream, i / 4, z);
  return static_cast<float>(sy::philox::dmul(1.0, z[i % 4]));
}

DeviceBuffer<float> philox_filled(uint64_t stream, size_t n) {
  DeviceBuffer<float> d(n);
  cu::init_normal(d.data(), kSeed, stream, 1.0, 0, n, nullptr);
  return d;
}

// Elements [first, first + n) of a device buffer.
std::vector<float> download_range(const DeviceBuffer<float>& d, size_t first, size_t n) {
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<float> h(n);
  CUDA_CHECK(cudaMemcpy(h.data(), d.data() + first, n * sizeof(float), cudaMemcpyDeviceToHost));
  return h;
}

// Skips unless the GPU has `bytes` free.
#define SY_REQUIRE_FREE_BYTES(bytes)                                           \
  do {                                                                         \
    size_t sy_free_ = 0, sy_total_ = 0;                                        \
    CUDA_CHECK(cudaMemGetInfo(&sy_free_, &sy_total_));                         \
    if (sy_free_ < (bytes))                                                    \
      GTEST_SKIP() << "needs " << ((bytes) >> 30) << " GiB free, the GPU has " \
                   << (sy_free_ >> 30);                                        \
  } while (0)

// The rows to check: the first, those around the row that holds flat index 2^31, the last.
std::vector<int64_t> rows_to_check(int64_t rows, int64_t width) {
  const int64_t b = kInt32Past / width;
  return {0, b - 1, b, b + 1, rows - 1};
}

constexpr int kC = 4160;        // row width
constexpr int kRows = 1 << 19;  // rows: kRows * kC = 2.18e9 > 2^31
static_assert(int64_t{kRows} * kC > kInt32Past);

TEST(HugeShapes, GatherRowsPastInt32) {
  SY_REQUIRE_GPU();
  SY_REQUIRE_FREE_BYTES(size_t{10} << 30);
  const int N0 = 1024;  // source token rows
  std::vector<int32_t> row_token(kRows);
  for (int r = 0; r < kRows; ++r) row_token[r] = static_cast<int32_t>((r * 7919L + 13) % N0);
  const auto m = philox_filled(1, static_cast<size_t>(N0) * kC);
  const auto d_rt = cu::to_device(row_token);
  DeviceBuffer<float> xs(static_cast<size_t>(kRows) * kC);
  cu::gather_rows_forward(xs.data(), m.data(), d_rt.data(), kRows, kC, nullptr);
  size_t wrong = 0;
  for (int64_t r : rows_to_check(kRows, kC)) {
    const auto got = download_range(xs, static_cast<size_t>(r) * kC, kC);
    for (int c = 0; c < kC; ++c)
      wrong += got[c] != input_value(1, static_cast<uint64_t>(row_token[r]) * kC + c);
  }
  EXPECT_EQ(wrong, 0u);
}

TEST(HugeShapes, CombinePastInt32) {
  SY_REQUIRE_GPU();
  SY_REQUIRE_FREE_BYTES(size_t{19} << 30);
  const int N = kRows, K = 1;
  std::vector<int32_t> slot_row(N);
  for (int n = 0; n < N; ++n) slot_row[n] = N - 1 - n;  // token n takes row N-1-n
  const auto ys = philox_filled(2, static_cast<size_t>(N) * kC);
  const auto d_sr = cu::to_device(slot_row);
  const auto d_gate = cu::to_device(std::vector<float>(N, 0.5f));  // exact scaling
  DeviceBuffer<float> out(static_cast<size_t>(N) * kC);
  out.fill_bytes(0);
  cu::combine_forward(out.data(), ys.data(), d_sr.data(), d_gate.data(), N, K, kC, nullptr);
  size_t wrong = 0;
  for (int64_t n : rows_to_check(N, kC)) {
    const auto got = download_range(out, static_cast<size_t>(n) * kC, kC);
    for (int c = 0; c < kC; ++c)
      wrong += got[c] != 0.5f * input_value(2, static_cast<uint64_t>(N - 1 - n) * kC + c);
  }
  EXPECT_EQ(wrong, 0u);
}

TEST(HugeShapes, CrossEntropyPastInt32) {
  SY_REQUIRE_GPU();
  SY_REQUIRE_FREE_BYTES(size_t{18} << 30);
  const int V = 1 << 18, N = 8200;  // N*V = 2.15e9 > 2^31
  static_assert(int64_t{8200} * (1 << 18) > kInt32Past);
  std::vector<int32_t> targets(N);
  for (int n = 0; n < N; ++n) targets[n] = static_cast<int32_t>((n * 31L) % V);
  const auto logits = philox_filled(3, static_cast<size_t>(N) * V);
  const auto d_targets = cu::to_device(targets);
  DeviceBuffer<float> probs(static_cast<size_t>(N) * V);
  auto losses = sy::gputest::poisoned<float>(N);
  cu::crossentropy_forward(losses.data(), probs.data(), logits.data(), d_targets.data(), N, V,
                           nullptr);
  const std::vector<float> got_losses = sy::gputest::download_f32(losses);
  for (int64_t n : rows_to_check(N, V)) {
    // The row's loss and softmax in double on the host.
    std::vector<double> z(V);
    double mx = -INFINITY;
    for (int v = 0; v < V; ++v) {
      z[v] = input_value(3, static_cast<uint64_t>(n) * V + v);
      mx = std::fmax(mx, z[v]);
    }
    double sum = 0;
    for (int v = 0; v < V; ++v) sum += std::exp(z[v] - mx);
    const double lse = mx + std::log(sum);
    EXPECT_NEAR(got_losses[n], lse - z[targets[n]], 1e-5 * std::fabs(lse)) << "row " << n;
    const auto p = download_range(probs, static_cast<size_t>(n) * V, V);
    size_t wrong = 0;
    for (int v = 0; v < V; v += 997)
      wrong += !(std::fabs(p[v] - std::exp(z[v] - lse)) <= 1e-5 * std::exp(z[v] - lse) + 1e-12);
    EXPECT_EQ(wrong, 0u) << "softmax of row " << n;
  }
}

}  // namespace
