// exp for float in vector form: the CPU ops' hot elementwise loops (SwiGLU's sigmoid, the
// attention softmax) spend most of their time in libm's scalar expf otherwise (a call per
// element, ~8% of a small.yaml step). GCC cannot if-convert the clamps of a scalar exp under the
// default IEEE flags (it leaves "control flow in loop"), so this is written on GCC/Clang vector
// types (4 floats: one SSE2 register, the baseline x86-64 target; wider types would change the ABI
// of these inline functions without -mavx). Header-only.
#pragma once

#include <cstdint>
#include <cstring>

namespace sy::cpu {

using f32x4 = float __attribute__((vector_size(16)));
using i32x4 = int32_t __attribute__((vector_size(16)));

// Loads/stores of 4 floats from unaligned memory.
inline f32x4 load4(const float* p) {
  f32x4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store4(float* p, f32x4 v) {
  std::memcpy(p, &v, sizeof v);
}

// e^x per lane, within 2 ulp of the correctly rounded value for x in [-87.3, 88.7] (checked
// against std::exp over that range by tests/kernels); below the range 2^-126 (~1.2e-38, not 0),
// above it (from 88.7228) +inf. Non-finite x (NaN, +-inf) gives NaN, so a diverged step still
// shows up as a non-finite loss.
// Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, Cephes' degree-7 polynomial for e^r (as in
// Cephes expf.c), then scaling by 2^n through the exponent bits.
inline f32x4 exp_approx(f32x4 x_in) {
  const f32x4 lo = f32x4{} - 87.33654f, hi = f32x4{} + 89.0f;
  // A NaN lane fails the comparison and becomes lo: the float->int conversion never sees it.
  f32x4 x = x_in > lo ? x_in : lo;
  x = x < hi ? x : hi;
  // n = round(x / ln2) with the 1.5 * 2^23 trick (the FPU's round-to-nearest, no roundps).
  const float kMagic = 12582912.0f;
  const f32x4 n = (x * 1.44269504088896341f + kMagic) - kMagic;
  // r = x - n ln2, ln2 split in two so n * hi is exact.
  const f32x4 r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  f32x4 p = f32x4{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const f32x4 er = p * (r * r) + r + 1.0f;
  // 2^n for n in [-126, 128] as 2^n1 * 2^n2, n1 = floor(n/2), both exponents in [-63, 64]
  // (2^128 is not a float: e^x for x in (88.7228, 89] overflows to inf, as it should).
  const i32x4 ni = __builtin_convertvector(n, i32x4);
  const i32x4 n1 = ni >> 1, n2 = ni - n1;
  const i32x4 b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
  f32x4 s1, s2;
  std::memcpy(&s1, &b1, sizeof s1);
  std::memcpy(&s2, &b2, sizeof s2);
  // x_in - x_in is 0 for finite lanes and NaN otherwise.
  return (er * s1) * s2 + (x_in - x_in);
}

// The same for one float (loop tails): the vector code on lane 0, so the bits are identical.
inline float exp_approx(float x) {
  return exp_approx(f32x4{} + x)[0];
}

}  // namespace sy::cpu
