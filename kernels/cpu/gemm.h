// Row-major GEMM on the CPU through OpenBLAS: the one place the CPU path does matrix products.
// float -> cblas_sgemm, double -> cblas_dgemm (the double instantiation is what the
// finite-difference gradient checks run).
#pragma once

#include <string>

namespace sy::cpu {

// C[M,N] = alpha * op(A) @ op(B) + beta * C, all row-major.
//   op(A) is [M,K]: A is [M,K] (lda >= K) or, when trans_a, [K,M] (lda >= M).
//   op(B) is [K,N]: B is [K,N] (ldb >= N) or, when trans_b, [N,K] (ldb >= K).
// M, N or K == 0 is allowed (C is scaled by beta when K == 0, untouched when M or N == 0).
template <class T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
          int ldb, T beta, T* C, int ldc);

// Products large enough to share are cut into blocks that run on the OpenMP threads, each one
// single-threaded BLAS call (gemm.cpp says why); inside an enclosing OpenMP parallel region the
// blocks run one after another. The blocks depend on the shape only, so the result is bitwise
// the same for any thread count. This makes OpenBLAS single-threaded for the process (idempotent,
// thread-safe); gemm() calls it itself, and code that parallelises around gemm() calls it before
// its region.
void use_single_threaded_blas();

// The BLAS build and the kernel it runs on this CPU, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH
// NO_AFFINITY Haswell MAX_THREADS=64, kernel Haswell" (OpenBLAS picks it by CPU, or
// OPENBLAS_CORETYPE names it). Kernels round a product's sums differently: runs are bitwise
// equal on the same kernel only.
std::string blas_description();
// The threads OpenBLAS computes with (each maps a 128 MiB buffer at its first product).
int blas_threads();

// How a backward writes an activation gradient: assigned (the usual case) or accumulated into
// (when several paths feed one tensor, e.g. the routed and shared experts of one MoE input).
enum class Grad { kAssign, kAccumulate };

// y[N,OC] (=) x[N,IC] @ w[IC,OC]        (SPEC convention: y = x W, W is [in, out])
template <class T>
void matmul_forward(T* y, const T* x, const T* w, int N, int IC, int OC);

// dx[N,IC] (= or += per dx_mode) dy[N,OC] @ w^T;  dw[IC,OC] (+=) x^T @ dy.
// Either output may be null to skip it.
template <class T>
void matmul_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, int N, int IC, int OC,
                     Grad dx_mode = Grad::kAssign);

}  // namespace sy::cpu
