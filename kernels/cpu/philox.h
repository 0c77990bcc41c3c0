// Philox4x32-10, the counter-based generator of Salmon et al., "Parallel random numbers: as easy
// as 1, 2, 3" (SC 2011), as in Random123 and cuRAND (CURAND_RNG_PSEUDO_PHILOX4_32_10), plus the
// few exactly reproducible transforms the layout-independent initialisation (src/model/init.h)
// builds on.
//
// Header-only and usable from CUDA device code (SY_HOST_DEVICE): no std:: containers, no libm
// beyond the correctly rounded sqrt.
// Why no libm: the initial weights must be bit-identical on the CPU and the GPU. glibc's and
// CUDA's log/sin/cos may differ in the last ulp, which after the cast to float still flips an
// occasional element. So the transforms below use only +, -, *, / and sqrt, which IEEE 754
// rounds identically everywhere, in a fixed order, with no fused multiply-add (on the device
// every product and sum goes through __dmul_rn/__dadd_rn, which nvcc never contracts; on the
// host see SY_NO_FP_CONTRACT below).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#ifndef SY_HOST_DEVICE
#if defined(__CUDACC__)
#define SY_HOST_DEVICE __host__ __device__
#else
#define SY_HOST_DEVICE
#endif
#endif

// GCC contracts a*b+c into an FMA in C++ even in ISO mode once the target has FMA (-march=haswell
// and later; checked: the draws change without this), and nvcc contracts on the device by
// default. The device side uses __dmul_rn/__dadd_rn; on GCC hosts every function doing the
// transform arithmetic carries this attribute. Clang's default (-ffp-contract=on) fuses only
// inside one expression, which the one-operation helpers below never give it; a host build with
// clang -ffp-contract=fast would break the bit-exactness.
#if !defined(__CUDA_ARCH__) && defined(__GNUC__) && !defined(__clang__)
#define SY_NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define SY_NO_FP_CONTRACT
#endif

namespace sy::philox {

struct Counter {
  uint32_t v[4];
};
struct Key {
  uint32_t v[2];
};

// Round multipliers and Weyl key increments (Salmon et al., Table 2 / Random123 philox.h).
inline constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
inline constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;

// Philox4x32 with `rounds` rounds (10 is the standard generator; other counts exist only so the
// published 7-round vectors can be checked too). The key is bumped between rounds, not after the
// last one.
SY_HOST_DEVICE inline Counter philox4x32(Counter ctr, Key key, int rounds = 10) {
  for (int r = 0; r < rounds; ++r) {
    if (r > 0) {
      key.v[0] += kW0;
      key.v[1] += kW1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kM0) * ctr.v[0];
    const uint64_t p1 = static_cast<uint64_t>(kM1) * ctr.v[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    ctr = Counter{{hi1 ^ ctr.v[1] ^ key.v[0], lo1, hi0 ^ ctr.v[3] ^ key.v[1], lo0}};
  }
  return ctr;
}

// A 64-bit seed as a key, low word first (the mapping cuRAND's host Philox generator uses for
// curandSetPseudoRandomGeneratorSeed: seed 0 reproduces the all-zero known-answer vector).
SY_HOST_DEVICE inline Key key_from_seed(uint64_t seed) {
  return Key{{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}};
}

// FNV-1a, 64 bits, over the bytes of s[0..n) (offset basis 0xcbf29ce484222325, prime
// 0x100000001b3): turns a parameter name into the stream id of its counters.
SY_HOST_DEVICE inline uint64_t fnv1a64(const char* s, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; ++i) {
    h ^= static_cast<uint64_t>(static_cast<unsigned char>(s[i]));
    h *= 0x100000001b3ull;
  }
  return h;
}

// ---- exactly rounded double arithmetic (no FMA contraction on the device) ----
SY_HOST_DEVICE SY_NO_FP_CONTRACT inline double dmul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
SY_HOST_DEVICE SY_NO_FP_CONTRACT inline double dadd(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}

SY_HOST_DEVICE inline double dsqrt(double a) {
#if defined(__CUDA_ARCH__)
  return __dsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
// floor(log2(n)) for n > 0.
SY_HOST_DEVICE inline int floor_log2(uint64_t n) {
#if defined(__CUDA_ARCH__)
  return 63 - __clzll(static_cast<long long>(n));
#elif defined(__GNUC__)
  return 63 - __builtin_clzll(n);
#else
  int e = 0;
  while ((n >> (e + 1)) != 0) ++e;
  return e;
#endif
}

// The uniform in (0, 1) that a 32-bit word stands for: u = (x + 0.5) * 2^-32 (exact in double;
// never 0 or 1, so log(u) is finite). Every such u is n * 2^-33 with n = 2x + 1 odd.
SY_HOST_DEVICE inline double u01(uint32_t x) {
  return (static_cast<double>(x) + 0.5) * (1.0 / 4294967296.0);
}

// log(u01(x)), to about 1e-16 relative, with the same bits on every IEEE machine.
// u = n * 2^-33 = m * 2^(e-33), m in [sqrt(1/2), sqrt(2)], found with integer steps (no frexp);
// log m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716, summed to s^21 (next term < 1e-17).
SY_HOST_DEVICE SY_NO_FP_CONTRACT inline double log_u01(uint32_t x) {
  const uint64_t n = 2 * static_cast<uint64_t>(x) + 1;  // 1 .. 2^33 - 1
  int e = floor_log2(n);
  double m = static_cast<double>(n) / static_cast<double>(uint64_t{1} << e);  // [1, 2), exact
  if (m > 1.4142135623730951) {
    m = dmul(m, 0.5);
    ++e;
  }
  const double s = (m - 1.0) / (m + 1.0);
  const double s2 = dmul(s, s);
  // Horner over the coefficients 1/(2k+1), k = 10 .. 0
  double poly = 1.0 / 21.0;
  for (int k = 9; k >= 0; --k) poly = dadd(1.0 / static_cast<double>(2 * k + 1), dmul(s2, poly));
  const double log_m = dmul(2.0, dmul(s, poly));
  return dadd(dmul(static_cast<double>(e - 33), 0.6931471805599453), log_m);
}

// sin and cos of 2*pi*u01(x), to about 1e-16, with the same bits on every IEEE machine.
// The quarter-turn reduction is exact in integers: 2 pi u = (q + r/2^31) * pi/2 with
// q = round(n / 2^31), r = n - q*2^31 in [-2^30, 2^30]; then theta = r * pi/2^32, |theta| <= pi/4,
// and Taylor series to theta^19 / theta^18 (next terms < 1e-17).
SY_HOST_DEVICE SY_NO_FP_CONTRACT inline void sincos_2pi_u01(uint32_t x, double* sin_out,
                                                            double* cos_out) {
  const int64_t n = 2 * static_cast<int64_t>(x) + 1;  // 1 .. 2^33 - 1
  const int64_t q = (n + (int64_t{1} << 30)) >> 31;   // 0 .. 4
  const int64_t r = n - q * (int64_t{1} << 31);
  const double theta = dmul(static_cast<double>(r), 3.141592653589793 / 4294967296.0);
  const double t2 = dmul(theta, theta);
  // Nested Taylor forms: sin = theta (1 - t2/(2*3) (1 - t2/(4*5) (...))),
  //                      cos = 1 - t2/(1*2) (1 - t2/(3*4) (...)), nine factors each.
  double ps = 1.0, pc = 1.0;
  for (int k = 9; k >= 1; --k) {
    ps = dadd(1.0, -dmul(dmul(t2, ps), 1.0 / static_cast<double>((2 * k) * (2 * k + 1))));
    pc = dadd(1.0, -dmul(dmul(t2, pc), 1.0 / static_cast<double>((2 * k - 1) * (2 * k))));
  }
  const double s = dmul(theta, ps), c = pc;
  switch (q & 3) {
    case 0:
      *sin_out = s;
      *cos_out = c;
      break;
    case 1:
      *sin_out = c;
      *cos_out = -s;
      break;
    case 2:
      *sin_out = -s;
      *cos_out = -c;
      break;
    default:
      *sin_out = -c;
      *cos_out = s;
      break;
  }
}

// Box-Muller on two words: z0 = rho cos(phi), z1 = rho sin(phi), rho = sqrt(-2 log u01(xa)),
// phi = 2 pi u01(xb). Two independent standard normals. (|z| <= 6.8 since u >= 2^-33.)
SY_HOST_DEVICE SY_NO_FP_CONTRACT inline void box_muller(uint32_t xa, uint32_t xb, double* z0,
                                                        double* z1) {
  const double rho = dsqrt(dmul(-2.0, log_u01(xa)));
  double s = 0.0, c = 0.0;
  sincos_2pi_u01(xb, &s, &c);
  *z0 = dmul(rho, c);
  *z1 = dmul(rho, s);
}

// Four standard normals from one Philox4x32-10 block: counter = {block lo, block hi, stream lo,
// stream hi}, key = key_from_seed(seed); out[0], out[1] = box_muller(w0, w1), out[2], out[3] =
// box_muller(w2, w3), w = the block's output words.
SY_HOST_DEVICE SY_NO_FP_CONTRACT inline void normal4(uint64_t seed, uint64_t stream, uint64_t block,
                                                     double out[4]) {
  const Counter ctr{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                     static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)}};
  const Counter w = philox4x32(ctr, key_from_seed(seed));
  box_muller(w.v[0], w.v[1], &out[0], &out[1]);
  box_muller(w.v[2], w.v[3], &out[2], &out[3]);
}

}  // namespace sy::philox
