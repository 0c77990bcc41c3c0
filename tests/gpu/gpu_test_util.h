// Helpers of the GPU suite: skip without a GPU, seeded random inputs, bf16 rounding on the host,
// NaN-poisoned device outputs and the normalised comparison every test uses.
//
// Comparison: for each element |gpu - ref| <= tol * (|ref| + max_abs(ref)) -- relative to the
// element, with the tensor's scale as the floor so elements that cancel to ~0 are judged against
// the size of the values around them (ggml's normalised error, per element). NaN never passes,
// so an element the kernel did not write (still the 0xFF poison) fails.
#pragma once

#include <cuda_bf16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cuda/buffer.h"
#include "kernels/cuda/check.h"
#include "router_cases.h"  // random_floats, random_ints

namespace sy::gputest {

using bf16 = __nv_bfloat16;

constexpr double kTolF32 = 1e-5;
constexpr double kTolBf16 = 1e-2;

// GTEST_SKIP()s the calling test, with the reason, when no GPU can be used.
#define SY_REQUIRE_GPU()                                              \
  do {                                                                \
    std::string sy_reason_;                                           \
    if (::sy::cuda::device_count(&sy_reason_) == 0)                   \
      GTEST_SKIP() << "no usable CUDA device (" << sy_reason_ << ")"; \
  } while (0)

// Element type conversion on the host (bf16 <-> float through cuda_bf16.h's host paths).
template <class TD, class TS>
std::vector<TD> convert(const std::vector<TS>& src) {
  std::vector<TD> dst(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if constexpr (std::is_same_v<TD, bf16>)
      dst[i] = __float2bfloat16_rn(static_cast<float>(src[i]));
    else if constexpr (std::is_same_v<TS, bf16>)
      dst[i] = static_cast<TD>(__bfloat162float(src[i]));
    else
      dst[i] = static_cast<TD>(src[i]);
  }
  return dst;
}

// The values a T-typed tensor can hold: x rounded to bf16 when T is bf16 (so the CPU reference
// sees exactly the GPU's inputs), unchanged for float.
template <class T>
std::vector<float> representable(const std::vector<float>& x) {
  if constexpr (std::is_same_v<T, bf16>) return convert<float>(convert<bf16>(x));
  return x;
}

template <class T>
constexpr double tol() {
  return std::is_same_v<T, bf16> ? kTolBf16 : kTolF32;
}

// A device copy of x in storage type T.
template <class T>
cuda::DeviceBuffer<T> upload_as(const std::vector<float>& x) {
  return cuda::to_device(convert<T>(x));
}

// The byte every element of a poisoned output is filled with: 0xFF for float and bf16 (a NaN,
// which no comparison accepts), 0x7F for integers (0x7F7F7F7F, far outside every legitimate
// index; 0xFF would be -1, the legitimate "dropped" value of slot_row).
template <class T>
constexpr int poison_byte() {
  return std::is_integral_v<T> ? 0x7F : 0xFF;
}
// That poison as a value of T (the tests compare integer outputs against it).
template <class T>
T poison_value() {
  unsigned char bytes[sizeof(T)];
  std::memset(bytes, poison_byte<T>(), sizeof(T));
  T v;
  std::memcpy(static_cast<void*>(&v), bytes, sizeof(T));
  return v;
}

// A device buffer of n elements, every byte poison_byte<T>() (synchronous: the poison is in
// place before any stream's kernel writes the results).
template <class T>
cuda::DeviceBuffer<T> poisoned(size_t n) {
  cuda::DeviceBuffer<T> d(n);
  d.fill_bytes(poison_byte<T>());
  return d;
}

// The device buffer as floats (synchronises the device first so kernel faults surface here).
template <class T>
std::vector<float> download_f32(const cuda::DeviceBuffer<T>& d) {
  CUDA_CHECK(cudaDeviceSynchronize());
  return convert<float>(d.download());
}

// Counts elements outside tolerance (NaN counts as wrong) and reports the first few.
inline ::testing::AssertionResult close(const std::vector<float>& got,
                                        const std::vector<float>& ref, double tol) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " vs " << ref.size();
  double scale = 0.0;
  for (float r : ref) scale = std::fmax(scale, std::fabs(static_cast<double>(r)));
  size_t wrong = 0;
  std::string first;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], r = ref[i];
    const double err = std::fabs(g - r);
    if (!(err <= tol * (std::fabs(r) + scale))) {  // written so NaN fails
      if (wrong < 5)
        first += " [" + std::to_string(i) + "] got " + std::to_string(g) + " want " +
                 std::to_string(r) + ";";
      ++wrong;
    }
  }
  if (wrong == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << wrong << " of " << got.size() << " elements outside tol "
                                       << tol << " (scale " << scale << "):" << first;
}

}  // namespace sy::gputest
