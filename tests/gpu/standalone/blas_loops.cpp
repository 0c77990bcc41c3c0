// Loop GEMMs standing in for OpenBLAS in the standalone GPU test build: plain triple loops with
// a double accumulator (the reference only needs to be right, not fast). Row-major only.
#include <cblas.h>

#include <stdexcept>

namespace {

template <class T>
void gemm_loops(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K,
                T alpha, const T* A, int lda, const T* B, int ldb, T beta, T* C, int ldc) {
  if (order != CblasRowMajor) throw std::invalid_argument("blas_loops: row-major only");
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      double acc = 0.0;
      for (int k = 0; k < K; ++k) {
        const T a = ta == CblasTrans ? A[static_cast<long>(k) * lda + i]
                                     : A[static_cast<long>(i) * lda + k];
        const T b = tb == CblasTrans ? B[static_cast<long>(j) * ldb + k]
                                     : B[static_cast<long>(k) * ldb + j];
        acc += static_cast<double>(a) * static_cast<double>(b);
      }
      T& c = C[static_cast<long>(i) * ldc + j];
      // BLAS semantics: beta == 0 overwrites C without reading it (C may hold NaN).
      c = static_cast<T>(alpha * acc + (beta == T(0) ? 0.0 : static_cast<double>(beta) * c));
    }
  }
}

}  // namespace

extern "C" {

void cblas_sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K,
                 float alpha, const float* A, int lda, const float* B, int ldb, float beta,
                 float* C, int ldc) {
  gemm_loops(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void cblas_dgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K,
                 double alpha, const double* A, int lda, const double* B, int ldb, double beta,
                 double* C, int ldc) {
  gemm_loops(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

int openblas_get_parallel(void) {
  return OPENBLAS_SEQUENTIAL;
}
int openblas_get_num_threads(void) {
  return 1;
}
void openblas_set_num_threads(int /*num_threads*/) {}
}
