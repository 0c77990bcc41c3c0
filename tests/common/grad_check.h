// Helpers for gradient tests: central finite differences, normalised errors and seeded random
// tensors. Header-only so every test area can include it as "common/grad_check.h".
//
// Typical use (double precision, L = sum(out * R) for a random R):
//   auto loss = [&] { op_forward(out.data(), x.data(), ...); return sy::test::dot(out, R); };
//   std::vector<double> g_fd = sy::test::fd_gradient(loss, x);
//   op_backward(dx.data(), R.data(), x.data(), ...);
//   EXPECT_LE(sy::test::rel_error(dx, g_fd), 1e-6);
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <vector>

namespace sy::test {

// Central-difference gradient of the scalar loss() with respect to every element of x.
// x is perturbed in place (x[i] += step, x[i] -= step) and restored bit-exactly afterwards;
// loss() must read x on every call. In double, step 1e-6 gives an error ~1e-10 relative.
template <class F>
std::vector<double> fd_gradient(F&& loss, std::vector<double>& x, double step = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + step;
    const double lp = loss();
    x[i] = x0 - step;
    const double lm = loss();
    x[i] = x0;
    g[i] = (lp - lm) / (2.0 * step);
  }
  return g;
}

// ||a - b|| / max(||b||, tiny): b is the reference. The two may have different element types
// (e.g. a float gradient against the double one).
template <class A, class B>
double rel_error(const std::vector<A>& a, const std::vector<B>& b, double tiny = 1e-30) {
  if (a.size() != b.size()) return std::numeric_limits<double>::infinity();
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    num += d * d;
    den += static_cast<double>(b[i]) * static_cast<double>(b[i]);
  }
  return std::sqrt(num) / std::max(std::sqrt(den), tiny);
}

// sum_i a[i] * b[i] in double: the scalar loss L = sum(out * R).
template <class A, class B>
double dot(const std::vector<A>& a, const std::vector<B>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    s += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  }
  return s;
}

// n values uniform in [lo, hi) from rng.
template <class T = double>
std::vector<T> random_vector(std::mt19937& rng, size_t n, double lo = -1.0, double hi = 1.0) {
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<T> v(n);
  for (auto& e : v) e = static_cast<T>(dist(rng));
  return v;
}

// Element-wise conversion, e.g. the double test inputs to the float instantiation's inputs.
template <class To, class From>
std::vector<To> convert(const std::vector<From>& v) {
  std::vector<To> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<To>(v[i]);
  return out;
}

}  // namespace sy::test
