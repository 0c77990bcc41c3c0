// The expert stages of the MoE layer: one grouped SwiGLU pass over expert-sorted rows (a gemm
// per expert over its contiguous row block), used for the routed experts and, one expert at a
// time over all N tokens, for the shared experts. See moe.h for the shape letters.
#include <algorithm>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/moe_ops.h"
#include "src/core/error.h"
#include "src/model/grow.h"
#include "src/model/moe.h"

namespace sy {

using cpu::Grad;

// y[R,C] (= or +=); h1, h3, h[R,F] (=); x: [R,C]; counts: [num_experts];
// w1, w3: [num_experts,C,F]; w2: [num_experts,F,C].
template <class T>
void grouped_swiglu_forward(T* y, T* h1, T* h3, T* h, const T* x, const int32_t* counts,
                            int num_experts, const T* w1, const T* w3, const T* w2, int C, int F,
                            Grad y_mode) {
  const long CF = static_cast<long>(C) * F;
  const T beta = y_mode == Grad::kAccumulate ? T(1) : T(0);
  long r0 = 0;
  for (int e = 0; e < num_experts; ++e) {
    const int rows = counts[e];
    if (rows == 0) continue;
    const T* xe = x + r0 * C;
    T* h1e = h1 + r0 * F;
    T* h3e = h3 + r0 * F;
    T* he = h + r0 * F;
    cpu::matmul_forward(h1e, xe, w1 + e * CF, rows, C, F);
    cpu::matmul_forward(h3e, xe, w3 + e * CF, rows, C, F);
    cpu::swiglu_forward(he, h1e, h3e, static_cast<long>(rows) * F);
    cpu::gemm<T>(false, false, rows, C, F, T(1), he, F, w2 + e * CF, C, beta, y + r0 * C, C);
    r0 += rows;
  }
}

// dx[R,C] (= or +=); dw1, dw3 [num_experts,C,F] (+=); dw2 [num_experts,F,C] (+=).
// scratch [2,R,F]: dh (then dh1 in place) and dh3.
template <class T>
void grouped_swiglu_backward(T* dx, T* dw1, T* dw3, T* dw2, T* scratch, const T* dy, const T* x,
                             const T* h1, const T* h3, const T* h, const int32_t* counts,
                             int num_experts, const T* w1, const T* w3, const T* w2, int C, int F,
                             Grad dx_mode) {
  const long CF = static_cast<long>(C) * F;
  long R = 0;
  for (int e = 0; e < num_experts; ++e) R += counts[e];
  T* dh1 = scratch;
  T* dh3 = scratch + R * F;
  long r0 = 0;
  for (int e = 0; e < num_experts; ++e) {
    const int rows = counts[e];
    if (rows == 0) continue;
    const T* xe = x + r0 * C;
    const T* dye = dy + r0 * C;
    T* dxe = dx + r0 * C;
    T* dh1e = dh1 + r0 * F;
    T* dh3e = dh3 + r0 * F;
    // y = h W2: dh = dy W2^T, dW2 += h^T dy
    cpu::matmul_backward(dh1e, dw2 + e * CF, dye, h + r0 * F, w2 + e * CF, rows, F, C);
    cpu::swiglu_backward(dh1e, dh3e, dh1e, h1 + r0 * F, h3 + r0 * F, static_cast<long>(rows) * F);
    // h1 = x W1, h3 = x W3: dx (=/+=) dh1 W1^T + dh3 W3^T
    cpu::matmul_backward(dxe, dw1 + e * CF, dh1e, xe, w1 + e * CF, rows, C, F, dx_mode);
    cpu::matmul_backward(dxe, dw3 + e * CF, dh3e, xe, w3 + e * CF, rows, C, F, Grad::kAccumulate);
    r0 += rows;
  }
}

template <class T>
void MoeLayer<T>::experts_forward(T* ys, const T* xs, const int32_t* counts, int num_experts,
                                  const T* w1, const T* w3, const T* w2) {
  long R = 0;
  for (int e = 0; e < num_experts; ++e) R += counts[e];
  const int F = d_.expert_hidden();
  const long RF = R * F;
  grow(h1_, RF);
  grow(h3_, RF);
  grow(h_, RF);
  R_ = static_cast<int>(R);
  grouped_swiglu_forward(ys, h1_.data(), h3_.data(), h_.data(), xs, counts, num_experts, w1, w3, w2,
                         d_.C, F);
}

template <class T>
void MoeLayer<T>::experts_backward(T* dxs, T* dw1, T* dw3, T* dw2, const T* dys, const T* xs,
                                   const int32_t* counts, int num_experts, const T* w1, const T* w3,
                                   const T* w2) {
  long R = 0;
  for (int e = 0; e < num_experts; ++e) R += counts[e];
  SY_CHECK(R == R_, "experts_backward on " << R << " rows, forward had " << R_);
  const int F = d_.expert_hidden();
  grow(dh_, 2 * R * F);
  grouped_swiglu_backward(dxs, dw1, dw3, dw2, dh_.data(), dys, xs, h1_.data(), h3_.data(),
                          h_.data(), counts, num_experts, w1, w3, w2, d_.C, F);
}

// Shared expert s is a one-expert grouped pass over all N tokens (its Fs columns of W1/W3 and
// rows of W2 with tp > 1: a partial output, summed over tp by the caller); the first assigns
// out, the others accumulate into it.
template <class T>
void MoeLayer<T>::shared_forward(T* out, const T* m, const MoeWeights<T>& w) {
  const int N = N_, C = d_.C, F = d_.shared_hidden(), S = d_.S;
  if (S == 0) {
    std::fill(out, out + static_cast<long>(N) * C, T(0));
    return;
  }
  const long NF = static_cast<long>(N) * F, CF = static_cast<long>(C) * F;
  grow(sh1_, S * NF);
  grow(sh3_, S * NF);
  grow(sh_, S * NF);
  const int32_t count = N;
  for (int s = 0; s < S; ++s) {
    grouped_swiglu_forward(out, sh1_.data() + s * NF, sh3_.data() + s * NF, sh_.data() + s * NF, m,
                           &count, 1, w.sw1 + s * CF, w.sw3 + s * CF, w.sw2 + s * CF, C, F,
                           s == 0 ? Grad::kAssign : Grad::kAccumulate);
  }
}

template <class T>
void MoeLayer<T>::shared_backward(T* dm, const MoeWeights<T>& g, const T* dout, const T* m,
                                  const MoeWeights<T>& w) {
  const int N = N_, C = d_.C, F = d_.shared_hidden(), S = d_.S;
  if (S == 0) {
    std::fill(dm, dm + static_cast<long>(N) * C, T(0));
    return;
  }
  const long NF = static_cast<long>(N) * F, CF = static_cast<long>(C) * F;
  grow(dh_, 2 * NF);
  const int32_t count = N;
  for (int s = 0; s < S; ++s) {
    grouped_swiglu_backward(dm, g.sw1 + s * CF, g.sw3 + s * CF, g.sw2 + s * CF, dh_.data(), dout, m,
                            sh1_.data() + s * NF, sh3_.data() + s * NF, sh_.data() + s * NF, &count,
                            1, w.sw1 + s * CF, w.sw3 + s * CF, w.sw2 + s * CF, C, F,
                            s == 0 ? Grad::kAssign : Grad::kAccumulate);
  }
}

#define SY_INSTANTIATE(T)                                                                          \
  template void grouped_swiglu_forward<T>(T*, T*, T*, T*, const T*, const int32_t*, int, const T*, \
                                          const T*, const T*, int, int, Grad);                     \
  template void grouped_swiglu_backward<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*,       \
                                           const T*, const T*, const int32_t*, int, const T*,      \
                                           const T*, const T*, int, int, Grad);                    \
  template void MoeLayer<T>::experts_forward(T*, const T*, const int32_t*, int, const T*,          \
                                             const T*, const T*);                                  \
  template void MoeLayer<T>::experts_backward(T*, T*, T*, T*, const T*, const T*, const int32_t*,  \
                                              int, const T*, const T*, const T*);                  \
  template void MoeLayer<T>::shared_forward(T*, const T*, const MoeWeights<T>&);                   \
  template void MoeLayer<T>::shared_backward(T*, const MoeWeights<T>&, const T*, const T*,         \
                                             const MoeWeights<T>&);
SY_INSTANTIATE(float)
SY_INSTANTIATE(double)
#undef SY_INSTANTIATE

}  // namespace sy
