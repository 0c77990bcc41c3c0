#include "kernels/cpu/gemm.h"

#include <cblas.h>

namespace sy::cpu {

namespace {
CBLAS_TRANSPOSE tr(bool t) {
  return t ? CblasTrans : CblasNoTrans;
}

// K == 0 (e.g. an expert that received no tokens): the product is empty, C = beta * C.
template <class T>
void scale_only(int M, int N, T beta, T* C, int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j)
      C[(long)i * ldc + j] = beta == T(0) ? T(0) : beta * C[(long)i * ldc + j];
}
}  // namespace

template <>
void gemm<float>(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                 int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_only(M, N, beta, C, ldc);
  cblas_sgemm(CblasRowMajor, tr(trans_a), tr(trans_b), M, N, K, alpha, A, lda, B, ldb, beta, C,
              ldc);
}

template <>
void gemm<double>(bool trans_a, bool trans_b, int M, int N, int K, double alpha, const double* A,
                  int lda, const double* B, int ldb, double beta, double* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_only(M, N, beta, C, ldc);
  cblas_dgemm(CblasRowMajor, tr(trans_a), tr(trans_b), M, N, K, alpha, A, lda, B, ldb, beta, C,
              ldc);
}

template <class T>
void matmul_forward(T* y, const T* x, const T* w, int N, int IC, int OC) {
  gemm<T>(false, false, N, OC, IC, T(1), x, IC, w, OC, T(0), y, OC);
}

template <class T>
void matmul_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, int N, int IC, int OC,
                     Grad dx_mode) {
  if (dx) {
    const T beta = dx_mode == Grad::kAccumulate ? T(1) : T(0);
    gemm<T>(false, true, N, IC, OC, T(1), dy, OC, w, OC, beta, dx, IC);
  }
  if (dw) gemm<T>(true, false, IC, OC, N, T(1), x, IC, dy, OC, T(1), dw, OC);
}

template void matmul_forward<float>(float*, const float*, const float*, int, int, int);
template void matmul_forward<double>(double*, const double*, const double*, int, int, int);
template void matmul_backward<float>(float*, float*, const float*, const float*, const float*, int,
                                     int, int, Grad);
template void matmul_backward<double>(double*, double*, const double*, const double*, const double*,
                                      int, int, int, Grad);

}  // namespace sy::cpu
