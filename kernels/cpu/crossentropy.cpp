// Softmax cross-entropy over the vocabulary (shape letters in ops.h).
#include <cmath>
#include <cstdint>

#include "kernels/cpu/ops.h"

namespace sy::cpu {

// losses[N] (=) logsumexp(logits[n,:]) - logits[n,targets[n]]; probs[N,V] (=) softmax(logits).
// logits: [N,V], targets: [N] in [0,V). probs may alias logits: the target logit is read
// before the row is overwritten, and every other write is element-wise.
// Subtracting the row max keeps exp() in range; the sum is in double (V is large).
template <class T>
void crossentropy_forward(T* losses, T* probs, const T* logits, const int32_t* targets, int N,
                          int V) {
  // Rows are independent: OpenMP threads, bitwise the same as serial for any thread count.
#pragma omp parallel for schedule(static) if (static_cast <long>(N) * V >= (1L << 16))
  for (int n = 0; n < N; ++n) {
    const T* x = logits + static_cast<long>(n) * V;
    T* p = probs + static_cast<long>(n) * V;
    T mx = x[0];
    for (int i = 1; i < V; ++i) mx = x[i] > mx ? x[i] : mx;
    const double target_logit = static_cast<double>(x[targets[n]]);
    double sum = 0.0;
    for (int i = 0; i < V; ++i) {
      const double e = std::exp(static_cast<double>(x[i] - mx));
      p[i] = static_cast<T>(e);
      sum += e;
    }
    losses[n] = static_cast<T>(static_cast<double>(mx) + std::log(sum) - target_logit);
    const T inv = static_cast<T>(1.0 / sum);
    for (int i = 0; i < V; ++i) p[i] *= inv;
  }
}

// dlogits[N,V] (=) (probs - onehot(targets)) * dlosses[n]; probs: [N,V], dlosses: [N].
// dlogits may alias probs.
template <class T>
void crossentropy_backward(T* dlogits, const T* probs, const int32_t* targets, const T* dlosses,
                           int N, int V) {
#pragma omp parallel for schedule(static) if (static_cast <long>(N) * V >= (1L << 16))
  for (int n = 0; n < N; ++n) {
    const T* p = probs + static_cast<long>(n) * V;
    T* d = dlogits + static_cast<long>(n) * V;
    const T dl = dlosses[n];
    for (int i = 0; i < V; ++i) d[i] = p[i] * dl;
    d[targets[n]] -= dl;
  }
}

#define SY_INSTANTIATE(T)                                                            \
  template void crossentropy_forward<T>(T*, T*, const T*, const int32_t*, int, int); \
  template void crossentropy_backward<T>(T*, const T*, const int32_t*, const T*, int, int);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
#undef SY_INSTANTIATE

}  // namespace sy::cpu
