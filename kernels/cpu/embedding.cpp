// Token embedding lookup and the residual add (see ops.h for the shape letters).
#include <cstdint>
#include <cstring>

#include "kernels/cpu/ops.h"

namespace sy::cpu {

// out[N,C] (=) emb[tokens[n], :]; emb: [V,C], tokens: [N] in [0, V).
template <class T>
void embedding_forward(T* out, const int32_t* tokens, const T* emb, int N, int C) {
  for (int n = 0; n < N; ++n) {
    std::memcpy(out + static_cast<long>(n) * C, emb + static_cast<long>(tokens[n]) * C,
                sizeof(T) * static_cast<size_t>(C));
  }
}

// demb[V,C] (+=) scatter-add of dout[N,C] by token. Serial on purpose: a repeated token
// makes rows collide, and a fixed order keeps the sum bitwise reproducible.
template <class T>
void embedding_backward(T* demb, const T* dout, const int32_t* tokens, int N, int C) {
  for (int n = 0; n < N; ++n) {
    T* row = demb + static_cast<long>(tokens[n]) * C;
    const T* d = dout + static_cast<long>(n) * C;
    for (int c = 0; c < C; ++c) row[c] += d[c];
  }
}

// out[n] (=) a[n] + b[n]; out may alias a or b.
template <class T>
void residual_forward(T* out, const T* a, const T* b, long n) {
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
