// Token embedding lookup and the residual add (see ops.h for the shape letters).
#include <omp.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/ops.h"

namespace sy::cpu {

namespace {
constexpr long kParallelMinElems = 1L << 16;  // below this, waking a thread costs more
}  // namespace

// out[N,C] (=) emb[tokens[n], :]; emb: [V,C], tokens: [N] in [0, V).
template <class T>
void embedding_forward(T* out, const int32_t* tokens, const T* emb, int N, int C) {
#pragma omp parallel for schedule(static) if (static_cast <long>(N) * C >= kParallelMinElems)
  for (int n = 0; n < N; ++n) {
    std::memcpy(out + static_cast<long>(n) * C, emb + static_cast<long>(tokens[n]) * C,
                sizeof(T) * static_cast<size_t>(C));
  }
}

// demb[V,C] (+=) scatter-add of dout[N,C] by token. A repeated token makes rows collide, so the
// threads split the columns, not the tokens: every element still sums its tokens in order
// n = 0..N-1, bitwise the same as a serial loop for any thread count.
template <class T>
void embedding_backward(T* demb, const T* dout, const int32_t* tokens, int N, int C) {
  const bool par = static_cast<long>(N) * C >= kParallelMinElems && C >= 32;
#pragma omp parallel if (par)
  {
    const int threads = omp_get_num_threads(), t = omp_get_thread_num();
    const int c0 = C * t / threads, c1 = C * (t + 1) / threads;
    for (int n = 0; n < N; ++n) {
      T* row = demb + static_cast<long>(tokens[n]) * C;
      const T* d = dout + static_cast<long>(n) * C;
      for (int c = c0; c < c1; ++c) row[c] += d[c];
    }
  }
}

// out[n] (=) a[n] + b[n]; out may alias a or b (element-wise, so any split is exact).
template <class T>
void residual_forward(T* out, const T* a, const T* b, long n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMinElems)
  for (long i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

#define SY_INSTANTIATE(T)                                                      \
  template void embedding_forward<T>(T*, const int32_t*, const T*, int, int);  \
  template void embedding_backward<T>(T*, const T*, const int32_t*, int, int); \
  template void residual_forward<T>(T*, const T*, const T*, long);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
#undef SY_INSTANTIATE

}  // namespace sy::cpu
