// The set-up helpers the GPU tests rely on (kernels/cuda/buffer.h, gpu_test_util.h):
//   - the poison of integer outputs is no legitimate value (0xFF bytes would be -1, the
//     "dropped" mark of slot_row, so a kernel that skipped a dropped slot would pass);
//   - DeviceBuffer::fill_bytes / upload (legacy NULL stream) are finished before work queued
//     afterwards on a NON-BLOCKING stream runs: the legacy stream is first kept busy for tens of
//     milliseconds, so a poison fill or an upload that merely got queued would land after the
//     non-blocking stream's write or read (the race the kernel, layer and NCCL tests had).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/cuda/buffer.h"

namespace {

using sy::cuda::DeviceBuffer;
using sy::gputest::poison_value;

// Passes only on a usable GPU: tests/gpu/sanitize.sh runs it to decide whether to skip.
TEST(GpuProbe, DeviceIsUsable) {
  SY_REQUIRE_GPU();
  SUCCEED();
}

TEST(Poison, IsNoLegitimateValue) {  // no GPU needed
  EXPECT_NE(poison_value<int32_t>(), -1) << "the dropped-slot mark";
  EXPECT_GT(poison_value<int32_t>(), 1 << 30) << "beyond every row, token and expert index";
  EXPECT_GT(poison_value<int64_t>(), int64_t{1} << 62);
  EXPECT_TRUE(std::isnan(poison_value<float>()));
  EXPECT_TRUE(std::isnan(__bfloat162float(poison_value<sy::gputest::bf16>())));
}

// Keeps the legacy NULL stream busy: `rounds` memsets of a 1 GiB buffer (~10+ ms on any GPU).
void occupy_legacy_stream(DeviceBuffer<std::byte>& big, int rounds) {
  for (int i = 0; i < rounds; ++i)
    CUDA_CHECK(cudaMemsetAsync(big.data(), i & 0xFF, big.bytes(), /*legacy stream*/ 0));
}

TEST(DeviceBuffer, FillIsDoneBeforeLaterNonBlockingStreamWork) {
  SY_REQUIRE_GPU();
  DeviceBuffer<std::byte> big(size_t{1} << 30);
  const size_t n = size_t{1} << 20;
  DeviceBuffer<float> x(n);
  sy::cuda::Stream stream;  // non-blocking, as the code under test uses
  occupy_legacy_stream(big, 64);
  x.fill_bytes(0xFF);  // the poison, queued behind the busy legacy stream
  CUDA_CHECK(cudaMemsetAsync(x.data(), 0, x.bytes(), stream.get()));  // "the kernel's result"
  stream.sync();
  const std::vector<float> got = x.download();
  size_t poisoned = 0;
  for (float v : got) poisoned += std::isnan(v);
  EXPECT_EQ(poisoned, 0u) << "the poison landed on the result";
}

TEST(DeviceBuffer, UploadIsDoneBeforeLaterNonBlockingStreamWork) {
  SY_REQUIRE_GPU();
  DeviceBuffer<std::byte> big(size_t{1} << 30);
  const size_t n = size_t{1} << 22;
  DeviceBuffer<float> x(n), y(n);
  x.fill_bytes(0);
  sy::cuda::Stream stream;
  occupy_legacy_stream(big, 64);
  x.upload(std::vector<float>(n, 1.0f));
  // A reader on the non-blocking stream: y = x.
  CUDA_CHECK(
      cudaMemcpyAsync(y.data(), x.data(), x.bytes(), cudaMemcpyDeviceToDevice, stream.get()));
  stream.sync();
  const std::vector<float> got = y.download();
  size_t stale = 0;
  for (float v : got) stale += v != 1.0f;
  EXPECT_EQ(stale, 0u) << "the reader saw the buffer before the upload arrived";
}

// The message of a failed allocation, as built (no GPU needed): the file and line, CUDA's own
// code and text, the call, and the size asked for.
TEST(CudaError, AFailedAllocationSaysTheSizeAskedFor) {  // no GPU needed
  try {
    sy::cuda::throw_alloc_error("cudaMallocHost", cudaErrorMemoryAllocation, size_t{3} << 30,
                                /*device=*/false, "f.cu", 7);
  } catch (const sy::cuda::CudaError& e) {
    const std::string want = "f.cu:7: CUDA error " +
                             std::to_string(static_cast<int>(cudaErrorMemoryAllocation)) + " (" +
                             cudaGetErrorString(cudaErrorMemoryAllocation) +
                             ") in cudaMallocHost of 3.00 GiB of page-locked host memory";
    EXPECT_EQ(std::string(e.what()), want);
    return;
  }
  FAIL() << "no CudaError";
}

// An allocation larger than the device: the message gives the size asked for and the device's
// free and total memory, the buffer stays usable (empty), and no error is left behind for the
// next launch check to find.
TEST(DeviceBuffer, OutOfMemorySaysTheSizeAndTheFreeMemory) {
  SY_REQUIRE_GPU();
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  DeviceBuffer<float> b;
  const size_t n = total_b / sizeof(float) * 2;  // twice the device
  try {
    b.resize(n);
    FAIL() << "allocated twice the device's memory";
  } catch (const sy::cuda::CudaError& e) {
    const std::string what = e.what();
    char asked[64];
    std::snprintf(asked, sizeof asked, "in cudaMalloc of %.2f GiB of device memory",
                  static_cast<double>(n * sizeof(float)) / (1024.0 * 1024.0 * 1024.0));
    EXPECT_NE(what.find(asked), std::string::npos) << asked << " not in: " << what;
    EXPECT_NE(what.find("GiB free of"), std::string::npos) << what;
    EXPECT_NE(what.find("buffer.h:"), std::string::npos) << what;
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(b.size(), 0u);
  b.resize(16);  // and the buffer is still usable
  b.upload(std::vector<float>(16, 2.0f));
  EXPECT_EQ(b.download(), std::vector<float>(16, 2.0f));
}

}  // namespace
