// The CPU ops' fast paths (OpenMP splits, the product split of gemm(), exp_approx) at sizes large
// enough to take them, against plain reference loops written here in double, and against the
// same op run on one thread: the row/column splits are designed to give bitwise the result of a
// serial loop for any thread count, so that is checked with ==, not a tolerance.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "common/grad_check.h"
#include "common/naive_attention.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/moe_ops.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/vec_math.h"

namespace {

namespace cpu = sy::cpu;
using sy::test::convert;
using sy::test::naive_attention;
using sy::test::random_vector;
using sy::test::rel_error;

// Runs f with the OpenMP thread count set to n, restoring the previous count.
void with_threads(int n, const std::function<void()>& f) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(n);
  f();
  omp_set_num_threads(before);
}

// f() on 1 thread and on 2 threads; each fills `out` (cleared to NaN first). Expects the same
// bits and returns the 2-thread result.
template <class T>
std::vector<T> same_bits_1_and_2_threads(size_t n, const std::function<void(std::vector<T>&)>& f) {
  std::vector<T> one(n, std::numeric_limits<T>::quiet_NaN()), two = one;
  with_threads(1, [&] { f(one); });
  with_threads(2, [&] { f(two); });
  EXPECT_EQ(0, std::memcmp(one.data(), two.data(), n * sizeof(T)))
      << "2 threads changed the bits (rel diff " << rel_error(two, one) << ")";
  return two;
}

// ---------------------------------------------------------------- exp_approx

// Distance in units in the last place between two finite positive floats.
int64_t ulps(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  return std::llabs(static_cast<int64_t>(ia) - static_cast<int64_t>(ib));
}

TEST(ParallelPaths, ExpApproxWithinTwoUlpOfLibm) {
  int64_t worst = 0;
  float worst_x = 0;
  const int steps = 2000000;
  for (int i = 0; i <= steps; ++i) {
    const float x = -87.0f + 175.5f * static_cast<float>(i) / steps;  // [-87, 88.5]
    const auto ref = static_cast<float>(std::exp(static_cast<double>(x)));
    const int64_t u = ulps(cpu::exp_approx(x), ref);
    if (u > worst) {
      worst = u;
      worst_x = x;
    }
  }
  EXPECT_LE(worst, 2) << "at x = " << worst_x;
  EXPECT_EQ(cpu::exp_approx(0.0f), 1.0f);
}

TEST(ParallelPaths, ExpApproxEdges) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(std::isnan(cpu::exp_approx(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(cpu::exp_approx(inf)));  // non-finite in, NaN out (documented)
  EXPECT_TRUE(std::isnan(cpu::exp_approx(-inf)));
  const float tiny = cpu::exp_approx(-1000.0f);
  EXPECT_TRUE(std::isfinite(tiny));
  EXPECT_GE(tiny, 0.0f);
  EXPECT_LT(tiny, 1.2e-38f);
  EXPECT_EQ(cpu::exp_approx(1000.0f), inf);
  EXPECT_EQ(cpu::exp_approx(88.8f), inf);  // e^88.8 > FLT_MAX, like std::exp
  EXPECT_TRUE(std::isfinite(cpu::exp_approx(88.7f)));
  // The 4-lane form gives every lane the bits of the one-float form.
  const cpu::f32x4 v = {-3.25f, 0.5f, 41.0f, -70.125f};
  const cpu::f32x4 e = cpu::exp_approx(v);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(e[i], cpu::exp_approx(v[i])) << i;
}

// ---------------------------------------------------------------- gemm split

// C = alpha op(A) op(B) + beta C in double.
void naive_gemm(bool ta, bool tb, int M, int N, int K, double alpha, const std::vector<float>& A,
                int lda, const std::vector<float>& B, int ldb, double beta, std::vector<double>& C,
                int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = 0;
      for (int k = 0; k < K; ++k)
        s += static_cast<double>(ta ? A[static_cast<size_t>(k) * lda + i]
                                    : A[static_cast<size_t>(i) * lda + k]) *
             static_cast<double>(tb ? B[static_cast<size_t>(j) * ldb + k]
                                    : B[static_cast<size_t>(k) * ldb + j]);
      double& c = C[static_cast<size_t>(i) * ldc + j];
      c = alpha * s + beta * c;
    }
}

TEST(ParallelPaths, GemmSplitMatchesNaiveLoops) {
  // Big enough to be split: rows (M >= N) and columns (N > M), every transpose, padded leading
  // dimensions (the padding must stay untouched), beta 0 and 1.
  const int shapes[][3] = {{301, 203, 97}, {45, 611, 150}};
  std::mt19937 rng(5);
  for (const auto& sh : shapes)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (float beta : {0.0f, 1.0f}) {
          const int M = sh[0], N = sh[1], K = sh[2], pad = 3;
          SCOPED_TRACE(::testing::Message() << M << "x" << N << "x" << K << " ta=" << ta
                                            << " tb=" << tb << " beta=" << beta);
          const int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
          const auto A = random_vector<float>(rng, static_cast<size_t>(ta ? K : M) * lda);
          const auto B = random_vector<float>(rng, static_cast<size_t>(tb ? N : K) * ldb);
          const auto C0 = random_vector<float>(rng, static_cast<size_t>(M) * ldc);
          std::vector<double> ref = convert<double>(C0);
          naive_gemm(ta, tb, M, N, K, 0.75, A, lda, B, ldb, beta, ref, ldc);
          auto run = [&](std::vector<float>& C) {
            C = C0;
            cpu::gemm<float>(ta, tb, M, N, K, 0.75f, A.data(), lda, B.data(), ldb, beta, C.data(),
                             ldc);
          };
          std::vector<float> C;
          with_threads(2, [&] { run(C); });
          for (int i = 0; i < M; ++i)
            for (int j = 0; j < ldc; ++j) {
              const size_t idx = static_cast<size_t>(i) * ldc + j;
              if (j < N)
                ASSERT_NEAR(C[idx], ref[idx], 2e-5 * (1.0 + std::abs(ref[idx])))
                    << "(" << i << "," << j << ")";
              else
                ASSERT_EQ(C[idx], C0[idx]) << "padding written at (" << i << "," << j << ")";
            }
          std::vector<float> again;  // run to run, the same bits
          with_threads(2, [&] { run(again); });
          ASSERT_EQ(0, std::memcmp(C.data(), again.data(), C.size() * sizeof(float)));
        }
}

// The bits of a product do not depend on the thread count (a run resumed with another
// OMP_NUM_THREADS continues bit for bit), nor on an enclosing parallel region (experts, heads).
TEST(ParallelPaths, GemmBitsIndependentOfThreadCount) {
  const int shapes[][3] = {{1000, 96, 128}, {64, 1200, 96}, {515, 515, 33}, {4100, 40, 64}};
  std::mt19937 rng(9);
  for (const auto& sh : shapes) {
    const int M = sh[0], N = sh[1], K = sh[2];
    SCOPED_TRACE(::testing::Message() << M << "x" << N << "x" << K);
    const auto A = random_vector<float>(rng, static_cast<size_t>(M) * K);
    const auto B = random_vector<float>(rng, static_cast<size_t>(K) * N);
    auto run = [&](std::vector<float>& C) {
      C.assign(static_cast<size_t>(M) * N, 0.0f);
      cpu::gemm<float>(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C.data(), N);
    };
    std::vector<float> one, many, nested;
    with_threads(1, [&] { run(one); });
    for (int threads : {2, 3, 4}) {
      with_threads(threads, [&] { run(many); });
      ASSERT_EQ(0, std::memcmp(one.data(), many.data(), one.size() * sizeof(float)))
          << threads << " threads changed the bits (rel diff " << rel_error(many, one) << ")";
    }
    with_threads(2, [&] {
#pragma omp parallel num_threads(2)
      {
#pragma omp single
        run(nested);
      }
    });
    ASSERT_EQ(0, std::memcmp(one.data(), nested.data(), one.size() * sizeof(float)))
        << "inside a parallel region the bits changed (rel diff " << rel_error(nested, one) << ")";
  }
}

// ---------------------------------------------------------------- dense ops

TEST(ParallelPaths, RmsnormForwardBackward) {
  const int N = 1024, C = 128;
  std::mt19937 rng(11);
  const auto x = random_vector<float>(rng, N * C), g = random_vector<float>(rng, C, 0.5, 1.5);
  const auto dy = random_vector<float>(rng, N * C), dg0 = random_vector<float>(rng, C);
  std::vector<float> rstd(N);
  const auto y = same_bits_1_and_2_threads<float>(N * C, [&](std::vector<float>& out) {
    cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), g.data(), N, C, 1e-5);
  });
  // dx and dg (+= onto dg0) in one buffer [dx | dg].
  const auto d = same_bits_1_and_2_threads<float>(N * C + C, [&](std::vector<float>& out) {
    std::copy(dg0.begin(), dg0.end(), out.begin() + N * C);
    cpu::rmsnorm_backward(out.data(), out.data() + N * C, dy.data(), x.data(), g.data(),
                          rstd.data(), N, C);
  });
  // Reference in double.
  std::vector<double> y_ref(N * C), d_ref(N * C + C);
  for (int c = 0; c < C; ++c) d_ref[N * C + c] = dg0[c];
  for (int n = 0; n < N; ++n) {
    double ss = 0, dot = 0;
    for (int c = 0; c < C; ++c) ss += double(x[n * C + c]) * x[n * C + c];
    const double r = 1.0 / std::sqrt(ss / C + 1e-5);
    for (int c = 0; c < C; ++c) {
      y_ref[n * C + c] = x[n * C + c] * r * g[c];
      dot += double(dy[n * C + c]) * g[c] * x[n * C + c];
      d_ref[N * C + c] += double(dy[n * C + c]) * x[n * C + c] * r;
    }
    for (int c = 0; c < C; ++c)
      d_ref[n * C + c] = r * g[c] * dy[n * C + c] - r * r * r / C * dot * x[n * C + c];
  }
  EXPECT_LT(rel_error(y, y_ref), 1e-6);
  EXPECT_LT(rel_error(d, d_ref), 1e-5);
}

TEST(ParallelPaths, CrossEntropyForwardBackward) {
  const int N = 512, V = 256;
  std::mt19937 rng(12);
  const auto logits = random_vector<float>(rng, N * V, -4, 4);
  std::vector<int32_t> targets(N);
  for (int n = 0; n < N; ++n) targets[n] = static_cast<int32_t>(rng() % V);
  const auto dl = random_vector<float>(rng, N);
  // [probs | losses]
  const auto fwd = same_bits_1_and_2_threads<float>(N * V + N, [&](std::vector<float>& out) {
    cpu::crossentropy_forward(out.data() + N * V, out.data(), logits.data(), targets.data(), N, V);
  });
  const auto bwd = same_bits_1_and_2_threads<float>(N * V, [&](std::vector<float>& out) {
    cpu::crossentropy_backward(out.data(), fwd.data(), targets.data(), dl.data(), N, V);
  });
  std::vector<double> ref(N * V + N), dref(N * V);
  for (int n = 0; n < N; ++n) {
    double mx = -1e300, sum = 0;
    for (int i = 0; i < V; ++i) mx = std::max(mx, double(logits[n * V + i]));
    for (int i = 0; i < V; ++i) sum += std::exp(logits[n * V + i] - mx);
    for (int i = 0; i < V; ++i) {
      ref[n * V + i] = std::exp(logits[n * V + i] - mx) / sum;
      dref[n * V + i] = (ref[n * V + i] - (i == targets[n])) * dl[n];
    }
    ref[N * V + n] = mx + std::log(sum) - logits[n * V + targets[n]];
  }
  EXPECT_LT(rel_error(fwd, ref), 1e-6);
  EXPECT_LT(rel_error(bwd, dref), 1e-6);
}

TEST(ParallelPaths, RopeEmbeddingResidualSameBitsOnTwoThreads) {
  const int B = 4, T = 128, C = 128, NH = 4, N = B * T, V = 50;
  std::mt19937 rng(13);
  const auto qkv = random_vector<float>(rng, N * 3 * C);
  same_bits_1_and_2_threads<float>(N * 3 * C, [&](std::vector<float>& out) {
    cpu::rope_forward(out.data(), qkv.data(), B, T, C, NH, 10000.0);
  });
  same_bits_1_and_2_threads<float>(N * 3 * C, [&](std::vector<float>& out) {
    cpu::rope_backward(out.data(), qkv.data(), B, T, C, NH, 10000.0);
  });
  std::vector<int32_t> tokens(N);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % V);  // many repeats: rows collide
  const auto emb = random_vector<float>(rng, V * C), dout = random_vector<float>(rng, N * C);
  same_bits_1_and_2_threads<float>(N * C, [&](std::vector<float>& out) {
    cpu::embedding_forward(out.data(), tokens.data(), emb.data(), N, C);
  });
  const auto demb = same_bits_1_and_2_threads<float>(V * C, [&](std::vector<float>& out) {
    std::fill(out.begin(), out.end(), 0.5f);
    cpu::embedding_backward(out.data(), dout.data(), tokens.data(), N, C);
  });
  std::vector<double> demb_ref(V * C, 0.5);
  for (int n = 0; n < N; ++n)
    for (int c = 0; c < C; ++c) demb_ref[tokens[n] * C + c] += dout[n * C + c];
  EXPECT_LT(rel_error(demb, demb_ref), 1e-6);
  const auto sum = same_bits_1_and_2_threads<float>(N * C, [&](std::vector<float>& out) {
    cpu::residual_forward(out.data(), emb.data(), dout.data(), static_cast<long>(V) * C);
    cpu::residual_forward(out.data(), qkv.data(), dout.data(), static_cast<long>(N) * C);
  });
  for (int i = 0; i < N * C; ++i) ASSERT_EQ(sum[i], qkv[i] + dout[i]);
}

// 150 positions: two full tiles of 64 query rows and a partial one; 9 (b, h) blocks split
// unevenly over 2 threads.
TEST(ParallelPaths, AttentionMatchesNaiveAndTwoThreads) {
  const int B = 3, T = 150, C = 48, NH = 3, N = B * T;
  std::mt19937 rng(14);
  const auto qkv = random_vector<float>(rng, N * 3 * C, -2, 2);
  const auto dout = random_vector<float>(rng, N * C);
  std::vector<float> stats(static_cast<size_t>(B) * NH * T * 2);
  const auto out = same_bits_1_and_2_threads<float>(N * C, [&](std::vector<float>& o) {
    cpu::attention_forward(o.data(), stats.data(), qkv.data(), B, T, C, NH);
  });
  EXPECT_LT(rel_error(out, naive_attention(qkv, B, T, C, NH).out), 1e-5);
  const auto dqkv = same_bits_1_and_2_threads<float>(N * 3 * C, [&](std::vector<float>& d) {
    cpu::attention_backward(d.data(), dout.data(), qkv.data(), stats.data(), B, T, C, NH);
  });
  // Backward against the directional derivative of the naive forward: for a random direction
  // u, sum(dout * (f(qkv + eps u) - f(qkv - eps u)) / 2 eps) = sum(dqkv * u).
  const auto u = random_vector<float>(rng, N * 3 * C);
  const double eps = 1e-3;
  std::vector<float> plus(qkv), minus(qkv);
  for (size_t i = 0; i < qkv.size(); ++i) {
    plus[i] = static_cast<float>(qkv[i] + eps * u[i]);
    minus[i] = static_cast<float>(qkv[i] - eps * u[i]);
  }
  const auto fp = naive_attention(plus, B, T, C, NH).out,
             fm = naive_attention(minus, B, T, C, NH).out;
  double fd = 0, an = 0;
  for (size_t i = 0; i < fp.size(); ++i) fd += dout[i] * (fp[i] - fm[i]) / (2 * eps);
  for (size_t i = 0; i < u.size(); ++i) an += double(dqkv[i]) * u[i];
  EXPECT_NEAR(an, fd, 2e-3 * std::abs(fd) + 1e-3);
}

// ---------------------------------------------------------------- MoE ops

TEST(ParallelPaths, SwigluMatchesDoubleReference) {
  const long n = 70000;
  std::mt19937 rng(15);
  const auto a = random_vector<float>(rng, n, -12, 12), b = random_vector<float>(rng, n);
  const auto dh = random_vector<float>(rng, n);
  const auto h = same_bits_1_and_2_threads<float>(
      n, [&](std::vector<float>& out) { cpu::swiglu_forward(out.data(), a.data(), b.data(), n); });
  const auto d = same_bits_1_and_2_threads<float>(2 * n, [&](std::vector<float>& out) {
    cpu::swiglu_backward(out.data(), out.data() + n, dh.data(), a.data(), b.data(), n);
  });
  std::vector<double> h_ref(n), d_ref(2 * n);
  for (long i = 0; i < n; ++i) {
    const double s = 1.0 / (1.0 + std::exp(-double(a[i])));
    h_ref[i] = a[i] * s * b[i];
    d_ref[i] = dh[i] * b[i] * s * (1 + a[i] * (1 - s));
    d_ref[n + i] = dh[i] * a[i] * s;
  }
  EXPECT_LT(rel_error(h, h_ref), 1e-6);
  EXPECT_LT(rel_error(d, d_ref), 1e-6);
  // Very negative inputs: the sigmoid goes to 0, never NaN.
  const float big[2] = {-200.0f, 200.0f}, one[2] = {1.0f, 1.0f};
  float out[2];
  cpu::swiglu_forward(out, big, one, 2);
  EXPECT_EQ(out[0], -0.0f);
  EXPECT_EQ(out[1], 200.0f);
}

TEST(ParallelPaths, RouterAndRowPermutationsSameBitsOnTwoThreads) {
  const int N = 2048, E = 8, K = 2, C = 64, A = N * K;
  std::mt19937 rng(16);
  const auto logits = random_vector<float>(rng, N * E, -3, 3), bias = random_vector<float>(rng, E);
  // [probs | lse | gates] and the top-k indices separately (int32).
  std::vector<int32_t> topk1(N * K), topk2(N * K);
  std::vector<int32_t>* topk = &topk1;
  const auto r = same_bits_1_and_2_threads<float>(N * E + N + N * K, [&](std::vector<float>& o) {
    cpu::router_forward(o.data(), o.data() + N * E, topk->data(), o.data() + N * E + N,
                        logits.data(), bias.data(), N, E, K, true);
    topk = &topk2;
  });
  EXPECT_EQ(topk1, topk2);
  const auto dgates = random_vector<float>(rng, N * K), dprobs = random_vector<float>(rng, N * E);
  const auto dlse = random_vector<float>(rng, N);
  same_bits_1_and_2_threads<float>(N * E, [&](std::vector<float>& o) {
    cpu::router_backward(o.data(), dgates.data(), dprobs.data(), dlse.data(), r.data(),
                         topk1.data(), N, E, K, true);
  });
  // Every token K times, in expert-sorted order: rows collide in the scatter-adds.
  std::vector<int32_t> idx(A);
  for (int q = 0; q < A; ++q) idx[q] = static_cast<int32_t>((q * 7919L) % N);
  const auto m = random_vector<float>(rng, N * C), ys = random_vector<float>(rng, A * C);
  const auto gate = random_vector<float>(rng, A);
  same_bits_1_and_2_threads<float>(A * C, [&](std::vector<float>& o) {
    cpu::gather_rows_forward(o.data(), m.data(), idx.data(), A, C);
  });
  const auto dm = same_bits_1_and_2_threads<float>(N * C, [&](std::vector<float>& o) {
    std::fill(o.begin(), o.end(), 0.25f);
    cpu::gather_rows_backward(o.data(), ys.data(), idx.data(), A, C);
  });
  const auto comb = same_bits_1_and_2_threads<float>(N * C, [&](std::vector<float>& o) {
    std::fill(o.begin(), o.end(), 0.25f);
    cpu::scatter_rows_forward(o.data(), ys.data(), idx.data(), gate.data(), A, C);
  });
  same_bits_1_and_2_threads<float>(A * C + A, [&](std::vector<float>& o) {
    cpu::scatter_rows_backward(o.data(), o.data() + A * C, m.data(), ys.data(), idx.data(),
                               gate.data(), A, C);
  });
  std::vector<double> dm_ref(N * C, 0.25), comb_ref(N * C, 0.25);
  for (int q = 0; q < A; ++q)
    for (int c = 0; c < C; ++c) {
      dm_ref[idx[q] * C + c] += ys[q * C + c];
      comb_ref[idx[q] * C + c] += double(gate[q]) * ys[q * C + c];
    }
  EXPECT_LT(rel_error(dm, dm_ref), 1e-6);
  EXPECT_LT(rel_error(comb, comb_ref), 1e-6);
}

}  // namespace
