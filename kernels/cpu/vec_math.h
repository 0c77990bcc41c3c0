// exp for float that the compiler vectorises: the CPU ops' hot elementwise loops (SwiGLU's
// sigmoid, the attention softmax) spend most of their time in libm's scalar expf otherwise (a call
// per element, measured ~8% of a small.yaml step). Header-only, no state.
#pragma once

#include <cstdint>
#include <cstring>

namespace sy::cpu {

// e^x in float, within 2 ulp of the correctly rounded value for x in [-87.3, 88.7] (checked against
// std::exp over that range by tests/kernels); below the range it returns 2^-126 (~1.2e-38, not
// 0), above it (from 88.7228) +inf, and NaN for NaN (a diverged step must still show up as a non-finite loss).
// Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, then Cephes' degree-7 polynomial for e^r
// (the one in Cephes expf.c), then scaling by 2^n through the exponent bits. Only +, *, min, max,
// conversions and shifts, so every step vectorises with plain SSE2.
inline float exp_approx(float x_in) {
  constexpr float kLo = -87.33654f, kHi = 89.0f;
  // NaN fails both comparisons and becomes kLo here (no undefined float->int cast below); it is
  // put back at the end.
  float x = x_in > kLo ? x_in : kLo;
  x = x < kHi ? x : kHi;
  // n = round(x / ln2) with the 1.5 * 2^23 trick (round-to-nearest of the FPU, no roundps).
  constexpr float kMagic = 12582912.0f;
  const float n = (x * 1.44269504088896341f + kMagic) - kMagic;
  // r = x - n ln2, ln2 split in two so n * hi is exact.
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = p * (r * r) + r + 1.0f;
  // 2^n for n in [-126, 128]: 2^128 is not a float, so n = 128 (x in (88.38, 89], where e^x
  // is finite up to 88.7228) scales by 2^127 and then by 2, overflowing to inf where exp does.
  const float nc = n < 127.0f ? n : 127.0f;
  const auto bits = static_cast<uint32_t>(static_cast<int32_t>(nc) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  const float y = (er * scale) * (n > nc ? 2.0f : 1.0f);
  return x_in != x_in ? x_in : y;
}

}  // namespace sy::cpu
