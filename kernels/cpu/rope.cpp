// Rotary position embedding, rotate-half convention (SPEC section 1; shape letters in ops.h).
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/ops.h"

namespace sy::cpu {

namespace {

// The [T_, HD/2] cos and sin tables of rope_table.
template <class T>
struct RopeTable {
  std::vector<T> cos, sin;
  RopeTable(int T_, int HD, double theta, long p0) { rope_table(T_, HD, theta, p0, cos, sin); }
};

// Rotates the q and k blocks of every token of src[N,3C] into dst by +angle (sign = 1) or
// -angle (sign = -1, the transpose of the rotation, i.e. the backward); v is copied. Token t of
// each sequence is at position p0 + t.
template <class T>
void rope_apply(T* dst, const T* src, int B, int T_, int C, int NH, double theta, T sign,
                long p0 = 0) {
  const int HD = C / NH;
  const int half = HD / 2;
  const RopeTable<T> tab(T_, HD, theta, p0);
  const long C3 = 3L * C;
  // Tokens are independent: OpenMP threads, bitwise the same as serial for any thread count.
#pragma omp parallel for schedule(static) if (static_cast <long>(B) * T_ * C >= (1L << 16))
  for (int bt = 0; bt < B * T_; ++bt) {
    const int t = bt % T_;
    const long row = static_cast<long>(bt) * C3;
    const T* cs = tab.cos.data() + static_cast<size_t>(t) * half;
    const T* sn = tab.sin.data() + static_cast<size_t>(t) * half;
    // q heads and k heads are 2*NH consecutive HD-wide groups at the start of the row.
    for (int grp = 0; grp < 2 * NH; ++grp) {
      const T* x = src + row + static_cast<long>(grp) * HD;
      T* y = dst + row + static_cast<long>(grp) * HD;
      for (int i = 0; i < half; ++i) {
        const T c = cs[i];
        const T s = sign * sn[i];
        const T x1 = x[i];
        const T x2 = x[i + half];
        y[i] = x1 * c - x2 * s;
        y[i + half] = x2 * c + x1 * s;
      }
    }
    std::memcpy(dst + row + 2L * C, src + row + 2L * C, sizeof(T) * static_cast<size_t>(C));
  }
}

}  // namespace

template <class T>
void rope_table(int T_, int HD, double theta, long p0, std::vector<T>& cos, std::vector<T>& sin) {
  const int half = HD / 2;
  cos.resize(static_cast<size_t>(T_) * half);
  sin.resize(static_cast<size_t>(T_) * half);
  for (int i = 0; i < half; ++i) {
    const double inv_freq = std::pow(theta, -2.0 * i / HD);
    for (int t = 0; t < T_; ++t) {
      const double a = static_cast<double>(p0 + t) * inv_freq;
      cos[static_cast<size_t>(t) * half + i] = static_cast<T>(std::cos(a));
      sin[static_cast<size_t>(t) * half + i] = static_cast<T>(std::sin(a));
    }
  }
}

// out[N,3C] (=) qkv with q and k rotated; qkv: [N,3C]. HD must be even.
template <class T>
void rope_forward(T* out, const T* qkv, int B, int T_, int C, int NH, double theta) {
  rope_apply(out, qkv, B, T_, C, NH, theta, T(1));
}

// dqkv[N,3C] (=) dout[N,3C] rotated back: a rotation's Jacobian transpose is its inverse.
template <class T>
void rope_backward(T* dqkv, const T* dout, int B, int T_, int C, int NH, double theta) {
  rope_apply(dqkv, dout, B, T_, C, NH, theta, T(-1));
}

template <class T>
void rope_forward_from(T* out, const T* qkv, int N, int C, int NH, double theta, long p0) {
  rope_apply(out, qkv, 1, N, C, NH, theta, T(1), p0);
}

#define SY_INSTANTIATE(T)                                                        \
  template void rope_forward<T>(T*, const T*, int, int, int, int, double);       \
  template void rope_backward<T>(T*, const T*, int, int, int, int, double);      \
  template void rope_forward_from<T>(T*, const T*, int, int, int, double, long); \
  template void rope_table<T>(int, int, double, long, std::vector<T>&, std::vector<T>&);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
#undef SY_INSTANTIATE

}  // namespace sy::cpu
