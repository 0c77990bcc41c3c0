// The MoE-specific ops on the GPU, mirroring kernels/cpu/moe_ops.h and the routing stages of
// src/model/moe.cpp (the CPU reference the tests compare with): the fused router (softmax +
// top-k + gates in ONE kernel), the dispatch layout (permutation of token slots into an
// expert-sorted buffer), gather/combine, SwiGLU, and the aux and z losses.
//
// Router math is fp32 whatever the compute precision (SPEC: p in fp32); T is the activation
// storage type (float or bf16) of the gathered rows and expert activations.
//
// Letters: N tokens, E experts, K top-k, C d_model, A rows of the expert-sorted buffer (= N*K
// when dropless), G balance groups, NG tokens per group, n a flat element count.
// Deterministic: no floating-point atomics anywhere; every sum has a fixed order.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/router_rule.h"

namespace sy::cuda {

using bf16 = __nv_bfloat16;

// One warp per token, fused, by `rule` (kernels/cpu/router_rule.h; cpu::router_forward is the
// reference): probs[N,E] (=) softmax(z) or, with rule.sigmoid, sigmoid(z); lse[N] (=)
// logsumexp(z), topk_idx[N,K] (=) the K largest probs + bias (best first; ties to the lower
// expert index; a NaN score ranks lowest), inside the token's rule.groups_topk best groups when
// rule.groups > 1, gates[N,K] (=) probs at topk_idx, / their sum when rule.norm_topk, times
// rule.gate_scale. bias[E] may be null. K <= kMaxTopK; rule must be valid_for(E, K).
constexpr int kMaxTopK = 16;
void router_forward(float* probs, float* lse, int32_t* topk_idx, float* gates, const float* logits,
                    const float* bias, int N, int E, int K, const RouterRule& rule,
                    cudaStream_t stream);
// dlogits[N,E] (=) as cpu::router_backward; dprobs and dlse may be null (dlse must be under
// rule.sigmoid).
void router_backward(float* dlogits, const float* dgates, const float* dprobs, const float* dlse,
                     const float* probs, const int32_t* topk_idx, int N, int E, int K,
                     const RouterRule& rule, cudaStream_t stream);
// The plain softmax top-k router (no groups, gate_scale 1).
inline void router_forward(float* probs, float* lse, int32_t* topk_idx, float* gates,
                           const float* logits, const float* bias, int N, int E, int K,
                           bool norm_topk, cudaStream_t stream) {
  router_forward(probs, lse, topk_idx, gates, logits, bias, N, E, K,
                 RouterRule{.norm_topk = norm_topk}, stream);
}
inline void router_backward(float* dlogits, const float* dgates, const float* dprobs,
                            const float* dlse, const float* probs, const int32_t* topk_idx, int N,
                            int E, int K, bool norm_topk, cudaStream_t stream) {
  router_backward(dlogits, dgates, dprobs, dlse, probs, topk_idx, N, E, K,
                  RouterRule{.norm_topk = norm_topk}, stream);
}

// Dispatch layout from topk_idx[N,K] (SPEC 1 capacity rule; src/model/moe.cpp build_layout):
//   selected[E]    (=) assignments routed to each expert (before capacity)
//   counts[E]      (=) rows kept per expert: min(selected, capacity), or selected when
//                      capacity < 0 (dropless)
//   offsets[E+1]   (=) exclusive prefix sum of counts (offsets[E] = A, the kept rows)
//   row_token[A]   (=) token of each row; rows of an expert are in token order (as on the CPU)
//   row_gate[A]    (=) gate of each row (from gates[N,K])
//   slot_row[N*K]  (=) the row of slot n*K+j, or -1 for a dropped assignment
// Over capacity an expert keeps the assignments of highest probs[n, e] (NaN lowest; ties: lower
// token index), ranked by a stable segmented radix sort of each expert's slots. scratch:
// moe_layout_scratch(N, E, K) int32 from an allocation's start (needs the current device).
long moe_layout_scratch(int N, int E, int K);
void moe_layout(int32_t* selected, int32_t* counts, int32_t* offsets, int32_t* row_token,
                float* row_gate, int32_t* slot_row, int32_t* scratch, const int32_t* topk_idx,
                const float* gates, const float* probs, int N, int E, int K, long capacity,
                cudaStream_t stream);

// Dispatch: xs[A,C] (=) m[row_token[r], :]
template <class T>
void gather_rows_forward(T* xs, const T* m, const int32_t* row_token, int A, int C,
                         cudaStream_t stream);
// dm[N,C] (+=) sum over the token's slots j = 0..K-1 of dxs[slot_row[n*K+j], :] (slot_row < 0:
// a dropped slot, skipped). Per token, so no two threads write one row.
template <class T>
void gather_rows_backward(T* dm, const T* dxs, const int32_t* slot_row, int N, int K, int C,
                          cudaStream_t stream);

// Rows of a route plan (comm/route_plan.h), for any row width W:
//   gather_rows      out[n,W] (=) src[idx[i], :] for i < n
//   segment_sum_rows out[n,W] (=) sum over p in [begin[i], begin[i+1]) of src[pos[p], :], in p
//                    order, fp32 accumulation (a row with an empty segment gets zeros)
template <class T>
void gather_rows(T* out, const T* src, const int64_t* idx, long n, int W, cudaStream_t stream);
template <class T>
void segment_sum_rows(T* out, const T* src, const int64_t* begin, const int64_t* pos, long n, int W,
                      cudaStream_t stream);

// Combine: out[N,C] (+=) sum_j row_gate[r] * ys[r, :] over the token's rows r = slot_row[n*K+j].
// (cpu::scatter_rows_forward adds the same terms row by row; the order differs only by rounding.)
template <class T>
void combine_forward(T* out, const T* ys, const int32_t* slot_row, const float* row_gate, int N,
                     int K, int C, cudaStream_t stream);
// dys[A,C] (=) row_gate[r] * dout[row_token[r], :];
// dgates[N*K] (=) dot(dout[n, :], ys[slot_row[q], :]) per slot q (0 for a dropped slot).
template <class T>
void combine_backward(T* dys, float* dgates, const T* dout, const T* ys, const int32_t* row_token,
                      const float* row_gate, const int32_t* slot_row, int A, int N, int K, int C,
                      cudaStream_t stream);

// h[n] (=) silu(a) * b;  backward: da, db (=), da may alias dh.
template <class T>
void swiglu_forward(T* h, const T* a, const T* b, long n, cudaStream_t stream);
template <class T>
void swiglu_backward(T* da, T* db, const T* dh, const T* a, const T* b, long n,
                     cudaStream_t stream);

// Aux load-balancing and z losses of one layer (SPEC 1; src/model/moe.cpp route()):
//   grp_frac[G,E] (=) f_i of each group (assignments to i / (NG*K), before capacity)
//   loss[2]       (=) {aux * group_weight, z * token_weight}: aux = sum_G coeff*E*sum_i f_i P_i,
//                      z = z_coeff * sum_n lse_n^2. Device doubles, summed in a fixed order.
// P_i is the group's mean of p_i, or with sigmoid_scores of p_i / sum_j p_j.
// Groups are consecutive runs of NG tokens (NG = seq_len for `sequence` scope, N for
// `micro_batch`); N must be a multiple of NG. scratch: router_losses_scratch(N, E, NG) floats,
// from an allocation's start (it holds doubles).
long router_losses_scratch(int N, int E, int NG);
void router_losses_forward(double* loss, float* grp_frac, float* scratch, const float* probs,
                           const float* lse, const int32_t* topk_idx, int N, int E, int K, int NG,
                           double aux_coeff, double z_coeff, double token_weight,
                           double group_weight, cudaStream_t stream, bool sigmoid_scores = false);
// dprobs[N,E] (=) a * f_i(G(n)), a = group_weight*aux_coeff*E/NG, or with sigmoid scores
// (sigmoid_probs[N,E] non-null: the forward's probs) a * (f_i - sum_j f_j p_j / S_n) / S_n,
// S_n = sum_j p_j;  dlse[N] (=) 2*token_weight*z_coeff*lse.
void router_losses_backward(float* dprobs, float* dlse, const float* grp_frac, const float* lse,
                            int N, int E, int NG, double aux_coeff, double z_coeff,
                            double token_weight, double group_weight, cudaStream_t stream,
                            const float* sigmoid_probs = nullptr);

}  // namespace sy::cuda
