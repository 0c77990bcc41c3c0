// gemm() and matmul_forward/backward against naive triple loops: every transpose combination,
// odd sizes, padded leading dimensions, beta 0 and 1, and the empty product K == 0.
#include "kernels/cpu/gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/grad_check.h"

namespace {

using sy::cpu::gemm;
using sy::cpu::Grad;
using sy::test::random_vector;
using sy::test::rel_error;

// C[M,N] = alpha op(A) op(B) + beta C with explicit index arithmetic, in double.
template <class T>
void naive_gemm(bool ta, bool tb, int M, int N, int K, double alpha, const std::vector<T>& A,
                int lda, const std::vector<T>& B, int ldb, double beta, std::vector<double>& C,
                int ldc) {
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      double s = 0.0;
      for (int k = 0; k < K; ++k) {
        const double a = static_cast<double>(ta ? A[static_cast<size_t>(k) * lda + i]
                                                : A[static_cast<size_t>(i) * lda + k]);
        const double b = static_cast<double>(tb ? B[static_cast<size_t>(j) * ldb + k]
                                                : B[static_cast<size_t>(k) * ldb + j]);
        s += a * b;
      }
      double& c = C[static_cast<size_t>(i) * ldc + j];
      c = alpha * s + (beta == 0.0 ? 0.0 : beta * c);
    }
  }
}

struct Case {
  bool ta, tb;
  int M, N, K;
  int pad;  // extra columns in every leading dimension
  double beta;
};

template <class T>
void check_gemm(const Case& cs, double tol) {
  SCOPED_TRACE(::testing::Message()
               << "ta=" << cs.ta << " tb=" << cs.tb << " M=" << cs.M << " N=" << cs.N
               << " K=" << cs.K << " pad=" << cs.pad << " beta=" << cs.beta);
  std::mt19937 rng(1234u + static_cast<unsigned>(cs.M * 131 + cs.N * 17 + cs.K));
  const int a_rows = cs.ta ? cs.K : cs.M, a_cols = cs.ta ? cs.M : cs.K;
  const int b_rows = cs.tb ? cs.N : cs.K, b_cols = cs.tb ? cs.K : cs.N;
  const int lda = a_cols + cs.pad, ldb = b_cols + cs.pad, ldc = cs.N + cs.pad;
  const auto A = random_vector<T>(rng, static_cast<size_t>(a_rows) * lda + 1);
  const auto B = random_vector<T>(rng, static_cast<size_t>(b_rows) * ldb + 1);
  auto C0 = random_vector<double>(rng, static_cast<size_t>(cs.M) * ldc + 1);
  std::vector<T> C = sy::test::convert<T>(C0);
  if (cs.beta == 0.0) {
    // beta = 0 must overwrite, not scale: NaN in C may not leak into the result.
    for (int i = 0; i < cs.M; ++i)
      for (int j = 0; j < cs.N; ++j)
        C[static_cast<size_t>(i) * ldc + j] = std::numeric_limits<T>::quiet_NaN();
  }
  std::vector<double> ref = sy::test::convert<double>(C);
  const double alpha = 0.75;
  naive_gemm(cs.ta, cs.tb, cs.M, cs.N, cs.K, alpha, A, lda, B, ldb, cs.beta, ref, ldc);
  gemm<T>(cs.ta, cs.tb, cs.M, cs.N, cs.K, static_cast<T>(alpha), A.data(), lda, B.data(), ldb,
          static_cast<T>(cs.beta), C.data(), ldc);
  for (int i = 0; i < cs.M; ++i) {
    for (int j = 0; j < ldc; ++j) {
      const size_t idx = static_cast<size_t>(i) * ldc + j;
      if (j < cs.N) {
        ASSERT_NEAR(static_cast<double>(C[idx]), ref[idx], tol * (1.0 + std::abs(ref[idx])))
            << "at (" << i << "," << j << ")";
      } else {
        // Padding columns beyond N belong to someone else: untouched, bit for bit.
        ASSERT_EQ(static_cast<double>(C[idx]), static_cast<double>(static_cast<T>(C0[idx])))
            << "padding written at (" << i << "," << j << ")";
      }
    }
  }
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  const int sizes[][3] = {{1, 1, 1}, {7, 5, 3}, {13, 17, 11}, {33, 9, 65}, {4, 6, 0}};
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (const auto& s : sizes)
        for (int pad : {0, 3})
          for (double beta : {0.0, 1.0}) cases.push_back({ta, tb, s[0], s[1], s[2], pad, beta});
  return cases;
}

TEST(Gemm, DoubleMatchesNaiveLoops) {
  for (const Case& c : all_cases()) check_gemm<double>(c, 1e-12);
}

TEST(Gemm, FloatMatchesNaiveLoops) {
  for (const Case& c : all_cases()) check_gemm<float>(c, 1e-5);
}

TEST(Gemm, EmptyMOrNLeavesCUntouched) {
  std::vector<double> A(4, 1.0), B(4, 1.0), C(4, 5.0);
  gemm<double>(false, false, 0, 2, 2, 1.0, A.data(), 2, B.data(), 2, 0.0, C.data(), 2);
  gemm<double>(false, false, 2, 0, 2, 1.0, A.data(), 2, B.data(), 2, 0.0, C.data(), 2);
  for (double c : C) EXPECT_EQ(c, 5.0);
}

// y = x W against loops; dx (= and +=) and dW (+=) against their definitions.
template <class T>
void check_matmul(double tol) {
  const int N = 7, IC = 5, OC = 9;
  std::mt19937 rng(99);
  const auto x = random_vector<T>(rng, N * IC);
  const auto w = random_vector<T>(rng, IC * OC);
  const auto dy = random_vector<T>(rng, N * OC);
  auto at = [](const std::vector<T>& v, int r, int c, int ld) {
    return static_cast<double>(v[static_cast<size_t>(r) * ld + c]);
  };

  std::vector<T> y(N * OC);
  sy::cpu::matmul_forward(y.data(), x.data(), w.data(), N, IC, OC);
  for (int n = 0; n < N; ++n)
    for (int o = 0; o < OC; ++o) {
      double s = 0.0;
      for (int i = 0; i < IC; ++i) s += at(x, n, i, IC) * at(w, i, o, OC);
      EXPECT_NEAR(at(y, n, o, OC), s, tol);
    }

  const auto dx0 = random_vector<T>(rng, N * IC);
  const auto dw0 = random_vector<T>(rng, IC * OC);
  for (Grad mode : {Grad::kAssign, Grad::kAccumulate}) {
    std::vector<T> dx = dx0, dw = dw0;
    sy::cpu::matmul_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), N, IC, OC, mode);
    for (int n = 0; n < N; ++n)
      for (int i = 0; i < IC; ++i) {
        double s = mode == Grad::kAccumulate ? at(dx0, n, i, IC) : 0.0;
        for (int o = 0; o < OC; ++o) s += at(dy, n, o, OC) * at(w, i, o, OC);
        EXPECT_NEAR(at(dx, n, i, IC), s, tol);
      }
    for (int i = 0; i < IC; ++i)
      for (int o = 0; o < OC; ++o) {
        double s = at(dw0, i, o, OC);  // dW always accumulates
        for (int n = 0; n < N; ++n) s += at(x, n, i, IC) * at(dy, n, o, OC);
        EXPECT_NEAR(at(dw, i, o, OC), s, tol);
      }
  }

  // Null outputs are skipped; the other is still computed, and right (by the loops).
  std::vector<T> dw = dw0;
  sy::cpu::matmul_backward<T>(nullptr, dw.data(), dy.data(), x.data(), w.data(), N, IC, OC);
  std::vector<T> dx = dx0;
  sy::cpu::matmul_backward<T>(dx.data(), nullptr, dy.data(), x.data(), w.data(), N, IC, OC);
  for (int i = 0; i < IC; ++i)
    for (int o = 0; o < OC; ++o) {
      double s = at(dw0, i, o, OC);
      for (int n = 0; n < N; ++n) s += at(x, n, i, IC) * at(dy, n, o, OC);
      EXPECT_NEAR(at(dw, i, o, OC), s, tol) << "dW alone";
    }
  for (int n = 0; n < N; ++n)
    for (int i = 0; i < IC; ++i) {
      double s = 0.0;  // Grad::kAssign, the default
      for (int o = 0; o < OC; ++o) s += at(dy, n, o, OC) * at(w, i, o, OC);
      EXPECT_NEAR(at(dx, n, i, IC), s, tol) << "dX alone";
    }
}

TEST(Matmul, DoubleMatchesLoops) {
  check_matmul<double>(1e-12);
}
TEST(Matmul, FloatMatchesLoops) {
  check_matmul<float>(1e-5);
}

}  // namespace
