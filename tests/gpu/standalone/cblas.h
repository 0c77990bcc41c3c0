// Stand-in for OpenBLAS's <cblas.h> in the standalone GPU test build (tests/gpu/CMakeLists.txt):
// only what kernels/cpu uses, implemented by blas_loops.cpp. Never used by the full build.
#pragma once

enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };

#define OPENBLAS_SEQUENTIAL 0
#define OPENBLAS_THREAD 1
#define OPENBLAS_OPENMP 2

extern "C" {
void cblas_sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K,
                 float alpha, const float* A, int lda, const float* B, int ldb, float beta,
                 float* C, int ldc);
void cblas_dgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K,
                 double alpha, const double* A, int lda, const double* B, int ldb, double beta,
                 double* C, int ldc);
// The loops are sequential: kernels/cpu/attention.cpp may then run heads in parallel.
int openblas_get_parallel(void);
int openblas_get_num_threads(void);
void openblas_set_num_threads(int num_threads);
}
