#include "kernels/cpu/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <bit>

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

void blas(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void blas(bool ta, bool tb, int M, int N, int K, double alpha, const double* A, int lda,
          const double* B, int ldb, double beta, double* C, int ldc) {
  cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Why the products are split here and BLAS runs single-threaded: the model's matrices are
// small (an expert's [R,C]x[C,F] with R in the hundreds, a head's [T,HD]x[HD,T]), and Debian's
// pthreads OpenBLAS wakes and parks its own pool on every call. Measured on 2 cores for
// [256,128]x[128,256]: OpenBLAS 2 threads 105-175 GFLOP/s (it yields the CPU between calls),
// 1 thread 110, two halves on our OpenMP threads 200-208. OpenMP threads stay warm across the
// many calls of a step. So the first product sets OpenBLAS to one thread (once per process;
// a caller may still raise it for its own cblas calls, the split stays correct either way).
// (use_single_threaded_blas() is defined below, outside this anonymous namespace.)
// Below this many FLOPs (~10 us on one core) a product stays one call: waking a second thread
// costs ~1 us when the cores are free, and much more when other processes hold them (a test
// suite running in parallel), so small models and the tests' shapes run serially.
constexpr double kSplitMinFlops = 2.0 * 128 * 128 * 64;
// Split boundaries are multiples of this (the sgemm micro-kernel's row/column tile), so every
// part but the last keeps full tiles.
constexpr int kSplitAlign = 16;
// The parts of a split product depend on its shape only, never on the thread count: OpenBLAS's
// bits for a row depend on the call it is in, so the same calls on any number of threads give
// the same bits (a run resumed with another OMP_NUM_THREADS continues bit for bit). Two parts,
// and 4, 8 or 16 once each part keeps at least 512 rows: a part per thread on 2 cores, as a
// split by the thread count would give, and more threads only for the big products. Measured
// with `switchyard bench train --config configs/small.yaml --no-torch` on a 2-vCPU AMD EPYC
// (Debian's OpenBLAS): the same step time as one part per thread on 2 threads; on 1 thread the
// two calls instead of one cost ~2.5 %. Parts of 128 rows (up to 16 per product) cost 12 % on
// 2 threads; parts of at least 256 rows, 30 % (the smaller products no longer shared).
constexpr int kMaxParts = 16;
constexpr int kPartTiles = 32;  // 512 rows or columns

int split_parts(int tiles) {
  if (tiles < 2) return 1;
  const auto wide = static_cast<unsigned>(tiles / kPartTiles);
  return std::clamp(static_cast<int>(std::bit_floor(wide)), 2, kMaxParts);
}

// C[M,N] = alpha op(A) op(B) + beta C: the larger of M and N is cut into contiguous parts, one
// single-threaded BLAS call each, spread over up to omp_get_max_threads() threads (run one after
// another inside an enclosing parallel region: heads, experts). Every element of C is computed
// by exactly one call over the full K.
template <class T>
void gemm_split(bool ta, bool tb, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
                int ldb, T beta, T* C, int ldc) {
  use_single_threaded_blas();
  const bool split_m = M >= N;
  const int D = split_m ? M : N;
  const int tiles = (D + kSplitAlign - 1) / kSplitAlign;
  const int parts = split_parts(tiles);
  if (parts == 1 || 2.0 * M * N * K < kSplitMinFlops) {
    blas(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  const int threads = omp_in_parallel() ? 1 : std::min(parts, omp_get_max_threads());
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int p = 0; p < parts; ++p) {
    const int lo = tiles * p / parts * kSplitAlign;
    const int hi = p + 1 == parts ? D : tiles * (p + 1) / parts * kSplitAlign;
    if (split_m) {
      // rows lo..hi of op(A) and C; op(A) row i is A row i, or A column i when ta.
      const T* a = ta ? A + lo : A + static_cast<long>(lo) * lda;
      blas(ta, tb, hi - lo, N, K, alpha, a, lda, B, ldb, beta, C + static_cast<long>(lo) * ldc,
           ldc);
    } else {
      // columns lo..hi of op(B) and C; op(B) column j is B column j, or B row j when tb.
      const T* b = tb ? B + static_cast<long>(lo) * ldb : B + lo;
      blas(ta, tb, M, hi - lo, K, alpha, A, lda, b, ldb, beta, C + lo, ldc);
    }
  }
}

}  // namespace

void use_single_threaded_blas() {
  // Asked at every call, not once: the GEMM ceiling benchmark sets OpenBLAS's threads for its own
  // timings, and a process that went on with them would run P BLAS threads in each of P OpenMP
  // ones.
  if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

int blas_threads() {
  return std::max(1, openblas_get_num_threads());
}

std::string blas_description() {
  const char* config = openblas_get_config();
  const char* core = openblas_get_corename();
  std::string out = config != nullptr ? config : "OpenBLAS";
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out + ", kernel " + (core != nullptr ? core : "unknown");
}

template <class T>
void gemm(bool trans_a, bool trans_b, int M, int N, int K, T alpha, const T* A, int lda, const T* B,
          int ldb, T beta, T* C, int ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_only(M, N, beta, C, ldc);
  gemm_split(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template void gemm<float>(bool, bool, int, int, int, float, const float*, int, const float*, int,
                          float, float*, int);
template void gemm<double>(bool, bool, int, int, int, double, const double*, int, const double*,
                           int, double, double*, int);

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
