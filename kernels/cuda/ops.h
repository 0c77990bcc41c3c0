// The dense ops of the model on the GPU, mirroring kernels/cpu/ops.h op for op (same argument
// order, same "(=)" / "(+=)" conventions; the CPU versions are the reference the tests compare
// with). Host-side entry points only; each launches on `stream` and returns without waiting.
//
// Precision: T is the activation storage type, float or bf16 (__nv_bfloat16). All arithmetic and
// every reduction is fp32. Parameters (emb, g) and parameter gradients (demb, dg) are always fp32
// (the master copy); per-token statistics (rstd, losses) are fp32.
//
// Letters: B sequences, T positions, N = B*T tokens, C d_model, NH heads, HD = C/NH, V vocab.
// Row-major throughout.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/buffer.h"

namespace sy::cuda {

using bf16 = __nv_bfloat16;

// out[N,C] (=) emb[tokens[n], :]                                      emb: [V,C] fp32
template <class T>
void embedding_forward(T* out, const int32_t* tokens, const float* emb, int N, int C,
                       cudaStream_t stream);
// demb[V,C] (+=) scatter-add of dout[N,C] by token. Every element adds its tokens' rows in token
// order n = 0..N-1, as the CPU does (bitwise the CPU's sums, reproducible, no atomics): the
// tokens are sorted by id (cub's radix sort is stable, so equal ids stay in n order) and one
// thread per (run of equal ids, column) sums its run, so the work spreads over N*C threads rather
// than C threads each walking all N tokens. Owns the sort's scratch (grown to the largest N).
class EmbeddingBackward {
 public:
  template <class T>
  void run(float* demb, const T* dout, const int32_t* tokens, int N, int C, cudaStream_t stream);

 private:
  DeviceBuffer<int32_t> sorted_tokens_, positions_, sorted_positions_;
  DeviceBuffer<unsigned char> sort_scratch_;
};

// out[n] (=) a[n] + b[n]; out may alias a or b.
template <class T>
void residual_forward(T* out, const T* a, const T* b, long n, cudaStream_t stream);

// dst[n] (=) src[n] converted (fp32 master weights -> bf16 compute copies, and back for tests).
template <class TD, class TS>
void convert(TD* dst, const TS* src, long n, cudaStream_t stream);

// out[N,C] (=) x / sqrt(mean(x^2) + eps) * g;  rstd[N] (=). g: [C] fp32.
template <class T>
void rmsnorm_forward(T* out, float* rstd, const T* x, const float* g, int N, int C, double eps,
                     cudaStream_t stream);
// dx[N,C] (=), dg[C] (+=, summed in a fixed order: per chunk of rows, then the chunks in
// order). scratch: rmsnorm_backward_scratch(N, C) floats (the chunks' partial sums).
long rmsnorm_backward_scratch(int N, int C);
template <class T>
void rmsnorm_backward(T* dx, float* dg, const T* dout, const T* x, const float* g,
                      const float* rstd, int N, int C, float* scratch, cudaStream_t stream);

// The angles of rope_forward / rope_backward at positions 0..T-1 for head dim HD: the CPU's
// [T, HD/2] cos and sin tables (cpu::rope_table, float), uploaded once (synchronously) by their
// owner, so that the rotations read them instead of computing pow, cos and sin in double for
// every element (4*NH*B times each angle) and see the CPU's angles bit for bit.
class RopeTable {
 public:
  RopeTable(int T, int HD, double theta);
  int seq_len() const { return T_; }
  int head_dim() const { return HD_; }
  const float* cos() const { return cos_.data(); }
  const float* sin() const { return sin_.data(); }

 private:
  int T_, HD_;
  DeviceBuffer<float> cos_, sin_;
};

// RoPE on the q and k blocks of qkv[N,3C] (rotate-half; see kernels/cpu/ops.h). out[N,3C] (=);
// out may not alias qkv. `angles`: RopeTable(T_, C/NH, theta) (std::invalid_argument otherwise).
template <class T>
void rope_forward(T* out, const T* qkv, const RopeTable& angles, int B, int T_, int C, int NH,
                  cudaStream_t stream);
// dqkv[N,3C] (=) the inverse rotation of dout.
template <class T>
void rope_backward(T* dqkv, const T* dout, const RopeTable& angles, int B, int T_, int C, int NH,
                   cudaStream_t stream);
// rope_forward of N consecutive tokens of one sequence at positions p0 .. p0+N-1 (incremental
// decoding, a few tokens a call: the angles are computed in double in the kernel), as
// cpu::rope_forward_from.
template <class T>
void rope_forward_from(T* out, const T* qkv, int N, int C, int NH, double theta, long p0,
                       cudaStream_t stream);

// Scratch the attention entry points need, in elements of T.
long attention_forward_scratch(int B, int T_, int C, int NH);   // 4*N*C
long attention_backward_scratch(int B, int T_, int C, int NH);  // 7*N*C + B*NH*T*T

// Causal multi-head attention on qkv[N,3C] (after RoPE), as kernels/cpu/ops.h:
//   att[B,NH,T,T] (=) softmax_causal(q k^T / sqrt(HD)) (zeros above the diagonal)
//   out[N,C]      (=) att @ v, heads concatenated
// The heads are first copied into [3,B,NH,T,HD] so each product is one cuBLAS strided-batched
// GEMM over the B*NH heads. `cublas` must be bound to `stream`.
template <class T>
void attention_forward(T* out, T* att, T* scratch, const T* qkv, int B, int T_, int C, int NH,
                       cublasHandle_t cublas, cudaStream_t stream);
// dqkv[N,3C] (=); scratch: attention_backward_scratch elements.
template <class T>
void attention_backward(T* dqkv, T* scratch, const T* dout, const T* qkv, const T* att, int B,
                        int T_, int C, int NH, cublasHandle_t cublas, cudaStream_t stream);

// Incremental decoding over a key/value cache (attention_cached.cu), as kernels/cpu/ops.h: k and v
// of position s sit in row s % R of kc and vc [R,C] (k after RoPE; R >= the window W).
// kc, vc rows (p0+i) % R (=) the k and v blocks of qkv[n,3C] row i, i < n <= R.
template <class T>
void kv_cache_store(T* kc, T* vc, const T* qkv, int R, long p0, int n, int C, cudaStream_t stream);
// Scratch attention_cached_forward needs, in fp32 elements: n*NH*W (one score row per query head).
long attention_cached_scratch(int n, int NH, int W);
// out[n,C] (=) the attention of query rows q[n, ldq] (positions p0 .. p0+n-1, head h in columns
// h*HD..) over the window of positions max(0, p-W+1) .. p of a cache of R rows, which the caller
// has written: one block per (query, head), scores and softmax in fp32 (the CPU sums its softmax
// in double).
template <class T>
void attention_cached_forward(T* out, float* scratch, const T* q, int ldq, const T* kc, const T* vc,
                              int W, int R, long p0, int n, int C, int NH, cudaStream_t stream);

// losses[N] (=) logsumexp(logits[n,:]) - logits[n,targets[n]];  probs[N,V] (=) softmax(logits).
// probs may alias logits.
template <class T>
void crossentropy_forward(float* losses, T* probs, const T* logits, const int32_t* targets, int N,
                          int V, cudaStream_t stream);
// dlogits[N,V] (=) (probs - onehot(targets)) * dlosses[n]. dlogits may alias probs.
template <class T>
void crossentropy_backward(T* dlogits, const T* probs, const int32_t* targets, const float* dlosses,
                           int N, int V, cudaStream_t stream);

}  // namespace sy::cuda
