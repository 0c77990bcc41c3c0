// The dense ops of the model on the CPU: the fp32 reference (and, instantiated for double, what
// the finite-difference gradient checks run). Each op is a *_forward / *_backward pair with the
// same argument order; backward takes gradients out first, then the forward's inputs.
// Parameter gradients accumulate (+=); activation gradients are assigned (=).
//
// Letters: B sequences, T positions, N = B*T tokens, C d_model, NH heads, HD = C/NH head dim,
// V vocab. All tensors row-major. Implemented for T = float and double.
// The matrix products live in gemm.h; the MoE-specific ops (router, SwiGLU, permutation) in
// moe_ops.h.
#pragma once

#include <cstdint>
#include <vector>

namespace sy::cpu {

// out[N,C] (=) emb[tokens[n], :]                                     emb: [V,C]
template <class T>
void embedding_forward(T* out, const int32_t* tokens, const T* emb, int N, int C);
// demb[V,C] (+=) scatter-add of dout[N,C] by token
template <class T>
void embedding_backward(T* demb, const T* dout, const int32_t* tokens, int N, int C);

// out[N,C] (=) x / sqrt(mean(x^2) + eps) * g;  rstd[N] (=) saved 1/sqrt(mean(x^2)+eps)
template <class T>
void rmsnorm_forward(T* out, T* rstd, const T* x, const T* g, int N, int C, double eps);
// dx[N,C] (=), dg[C] (+=)
template <class T>
void rmsnorm_backward(T* dx, T* dg, const T* dout, const T* x, const T* g, const T* rstd, int N,
                      int C);

// RoPE on the q and k blocks of qkv[N,3C] ([q | k | v] per token, head h = columns h*HD..),
// rotate-half convention: for i < HD/2 the pair (i, i+HD/2) rotates by angle
// pos * theta^(-2i/HD), pos = position inside the sequence (0..T-1). v is copied unchanged.
// HD must be even. Angles are computed in double. out[N,3C] (=). out may not alias qkv.
template <class T>
void rope_forward(T* out, const T* qkv, int B, int T_, int C, int NH, double theta);
// dqkv[N,3C] (=) the inverse rotation of dout (v part copied).
template <class T>
void rope_backward(T* dqkv, const T* dout, int B, int T_, int C, int NH, double theta);
// rope_forward of N consecutive tokens of one sequence at positions p0 .. p0+N-1 (incremental
// decoding); the same angles as rope_forward's for the same positions.
template <class T>
void rope_forward_from(T* out, const T* qkv, int N, int C, int NH, double theta, long p0);
// The angles of the rotations above: cos and sin of (p0 + t) * theta^(-2i/HD) for t < T_ and
// i < HD/2, each a [T_, HD/2] table, computed in double and rounded to T once. The GPU's RoPE
// reads these same tables (cuda::RopeTable).
template <class T>
void rope_table(int T_, int HD, double theta, long p0, std::vector<T>& cos, std::vector<T>& sin);

// Causal multi-head attention on qkv[N,3C] (after RoPE):
//   att = softmax_causal(q k^T / sqrt(HD)) per (b, h), never stored whole: a tile at a time
//   out[N,C] (=) att @ v, heads concatenated (head h -> columns h*HD..)
//   stats[B,NH,T,2] (=) each row's max score and 1/sum of its exps: all the backward needs to
//   recompute att (the same bits as the forward's), O(T) memory instead of O(T^2).
// The (b,h) pairs run on the OpenMP threads, each gemm() inside one single-threaded BLAS call
// (gemm.h), each thread with a [64, T] tile or two of its own; results are bitwise the same for
// any thread count (see attention.cpp).
template <class T>
void attention_forward(T* out, T* stats, const T* qkv, int B, int T_, int C, int NH);
// dqkv[N,3C] (=), from dout[N,C] and the forward's qkv and stats.
template <class T>
void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* stats, int B, int T_, int C,
                        int NH);

// Attention of n query rows at positions p0 .. p0+n-1 of one sequence over a key/value cache
// (incremental decoding): k and v of position s sit in row s % rows of kc and vc [rows,C] (k
// after RoPE; rows >= W), and the query at position p attends to the window of positions
// max(0, p-W+1) .. p, which the caller has written. q: [n, ldq] (head h in columns h*HD..);
// out[n,C] (=); scratch: W elements. The softmax is attention_forward's (same exp, sum in
// double), so within the first W positions a row equals attention_forward's row up to the
// rounding of the dot products.
template <class T>
void attention_cached_forward(T* out, T* scratch, const T* q, int ldq, const T* kc, const T* vc,
                              int W, int rows, long p0, int n, int C, int NH);

// losses[N] (=) logsumexp(logits[n,:]) - logits[n, targets[n]];  probs[N,V] (=) softmax(logits).
// targets[n] in [0, V). probs may alias logits (in place).
template <class T>
void crossentropy_forward(T* losses, T* probs, const T* logits, const int32_t* targets, int N,
                          int V);
// dlogits[N,V] (=) (probs - onehot(targets)) * dlosses[n]. dlogits may alias probs.
template <class T>
void crossentropy_backward(T* dlogits, const T* probs, const int32_t* targets, const T* dlosses,
                           int N, int V);

// out[n] (=) a[n] + b[n]  (the residual stream); out may alias a or b. Its backward is the
// identity: the caller adds the incoming gradient to both branches.
template <class T>
void residual_forward(T* out, const T* a, const T* b, long n);

}  // namespace sy::cpu
