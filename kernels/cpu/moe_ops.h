// The MoE-specific ops on the CPU (SPEC section 1): the router (scores, top-k, gates), the
// SwiGLU nonlinearity of the experts, and the row permutations that move tokens into the
// expert-sorted buffer and back. Each op is a *_forward / *_backward pair with the same argument
// order (backward: gradients out first, then the forward's inputs). The matrix products of the
// experts are gemm.h; the stages that tie these together are src/model/moe.h.
//
// Letters: N tokens, E experts, K top-k, C d_model, A rows of an expert-sorted buffer (kept
// assignments), n a flat element count. All tensors row-major. Implemented for T = float and
// double. No op allocates; large calls run on the OpenMP threads, split so that every result is
// bitwise the one of a serial loop for any thread count.
#pragma once

#include <cstdint>

#include "kernels/cpu/router_rule.h"

namespace sy::cpu {

// Router of N tokens over E experts, from the logits z[N,E] = m Wr, by `rule` (router_rule.h):
//   probs[N,E]    (=) p = softmax(z), or sigmoid(z) per element with rule.sigmoid
//   lse[N]        (=) logsumexp(z)                       (the z-loss is built on it)
//   topk_idx[N,K] (=) the K experts with the largest probs + bias, best first; ties go to the
//                     lower expert index. bias[E] may be null (= zeros). With rule.groups > 1
//                     only experts of the token's rule.groups_topk best groups compete.
//   gates[N,K]    (=) probs at topk_idx, divided by their sum when rule.norm_topk, times
//                     rule.gate_scale. The bias never enters the gates.
// Softmax, sigmoid and logsumexp are computed in double, then rounded to T. rule must be
// valid_for(E, K).
template <class T>
void router_forward(T* probs, T* lse, int32_t* topk_idx, T* gates, const T* logits, const T* bias,
                    int N, int E, int K, const RouterRule& rule);
// dlogits[N,E] (=) the gradient reaching z through
//   dgates[N,K] (gradient on the gates; selection itself has none),
//   dprobs[N,E] (an extra gradient directly on probs, e.g. from the aux loss; may be null),
//   dlse[N]     (gradient on lse, e.g. from the z-loss; may be null, and must be under
//               rule.sigmoid: there is no z-loss then).
template <class T>
void router_backward(T* dlogits, const T* dgates, const T* dprobs, const T* dlse, const T* probs,
                     const int32_t* topk_idx, int N, int E, int K, const RouterRule& rule);

// The plain softmax top-k router (no groups, gate_scale 1).
template <class T>
void router_forward(T* probs, T* lse, int32_t* topk_idx, T* gates, const T* logits, const T* bias,
                    int N, int E, int K, bool norm_topk) {
  router_forward(probs, lse, topk_idx, gates, logits, bias, N, E, K,
                 RouterRule{.norm_topk = norm_topk});
}
template <class T>
void router_backward(T* dlogits, const T* dgates, const T* dprobs, const T* dlse, const T* probs,
                     const int32_t* topk_idx, int N, int E, int K, bool norm_topk) {
  router_backward(dlogits, dgates, dprobs, dlse, probs, topk_idx, N, E, K,
                  RouterRule{.norm_topk = norm_topk});
}

// h[n] (=) silu(a) * b, silu(a) = a * sigmoid(a)   (a = x W1, b = x W3 of a SwiGLU expert)
template <class T>
void swiglu_forward(T* h, const T* a, const T* b, long n);
// da[n] (=), db[n] (=) from dh[n]. da may alias dh (each element is read before it is written).
template <class T>
void swiglu_backward(T* da, T* db, const T* dh, const T* a, const T* b, long n);

// Dispatch: out[A,C] (=) in[idx[r], :] for each row r.                         in: [N,C]
template <class T>
void gather_rows_forward(T* out, const T* in, const int32_t* idx, int A, int C);
// din[N,C] (+=) scatter-add of dout[A,C] rows to idx (rows are added in order r = 0..A-1).
template <class T>
void gather_rows_backward(T* din, const T* dout, const int32_t* idx, int A, int C);

// Combine: out[idx[r], :] (+=) scale[r] * in[r, :] for each row r, in order r = 0..A-1.
//   out: [N,C], in: [A,C], scale: [A] (the gate of each row)
template <class T>
void scatter_rows_forward(T* out, const T* in, const int32_t* idx, const T* scale, int A, int C);
// din[A,C] (=) scale[r] * dout[idx[r], :];  dscale[A] (=) dot(dout[idx[r], :], in[r, :]).
// Either output may be null to skip it.
template <class T>
void scatter_rows_backward(T* din, T* dscale, const T* dout, const T* in, const int32_t* idx,
                           const T* scale, int A, int C);

}  // namespace sy::cpu
