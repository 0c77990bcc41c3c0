// RMSNorm: y = x / sqrt(mean(x^2) + eps) * g, per token row (see ops.h for the shape letters).
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/ops.h"

namespace sy::cpu {

// Rows are independent and run on the OpenMP threads; dg, a sum over rows, is accumulated per
// column block instead (each thread its own columns, every column in row order n = 0..N-1), so
// every result is bitwise the same as a serial loop's for any thread count.
namespace {
constexpr long kParallelMinElems = 1L << 16;  // smaller calls: waking a thread costs more
bool parallel(int N, int C) {
  return static_cast<long>(N) * C >= kParallelMinElems;
}
}  // namespace

// out[N,C] (=), rstd[N] (=) 1/sqrt(mean(x^2)+eps); x: [N,C], g: [C].
// The row reduction accumulates in double so the fp32 reference is not limited by the sum's
// rounding (C can be thousands).
template <class T>
void rmsnorm_forward(T* out, T* rstd, const T* x, const T* g, int N, int C, double eps) {
#pragma omp parallel for schedule(static) if (parallel(N, C))
  for (int n = 0; n < N; ++n) {
    const T* xr = x + static_cast<long>(n) * C;
    T* yr = out + static_cast<long>(n) * C;
    double ss = 0.0;
    for (int c = 0; c < C; ++c) ss += static_cast<double>(xr[c]) * static_cast<double>(xr[c]);
    const T r = static_cast<T>(1.0 / std::sqrt(ss / C + eps));
    for (int c = 0; c < C; ++c) yr[c] = xr[c] * r * g[c];
    rstd[n] = r;
  }
}

// dx[N,C] (=), dg[C] (+=); dout, x: [N,C], g: [C], rstd: [N] from the forward.
// With y_j = x_j r g_j and r = (mean(x^2)+eps)^(-1/2), dr/dx_j = -r^3 x_j / C, so
//   dx_j = r g_j dy_j - (r^3 / C) x_j sum_i(dy_i g_i x_i).
template <class T>
void rmsnorm_backward(T* dx, T* dg, const T* dout, const T* x, const T* g, const T* rstd, int N,
                      int C) {
  const bool par = parallel(N, C);
#pragma omp parallel if (par)
  {
#pragma omp for schedule(static)
    for (int n = 0; n < N; ++n) {
      const T* xr = x + static_cast<long>(n) * C;
      const T* dy = dout + static_cast<long>(n) * C;
      T* dxr = dx + static_cast<long>(n) * C;
      const T r = rstd[n];
      double dot = 0.0;
      for (int c = 0; c < C; ++c) {
        dot += static_cast<double>(dy[c]) * static_cast<double>(g[c]) * static_cast<double>(xr[c]);
      }
      const T coef = static_cast<T>(dot * static_cast<double>(r) * static_cast<double>(r) *
                                    static_cast<double>(r) / C);
      for (int c = 0; c < C; ++c) dxr[c] = r * g[c] * dy[c] - coef * xr[c];
    }
    // dg[c] += sum over n in order; thread t owns columns [c0, c1).
    const int threads = omp_get_num_threads(), t = omp_get_thread_num();
    const int c0 = C * t / threads, c1 = C * (t + 1) / threads;
    for (int n = 0; n < N; ++n) {
      const T* xr = x + static_cast<long>(n) * C;
      const T* dy = dout + static_cast<long>(n) * C;
      const T r = rstd[n];
      for (int c = c0; c < c1; ++c) dg[c] += dy[c] * xr[c] * r;
    }
  }
}

#define SY_INSTANTIATE(T)                                                         \
  template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int, int, double); \
  template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int, int);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
#undef SY_INSTANTIATE

}  // namespace sy::cpu
