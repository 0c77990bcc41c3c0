#include "src/bench/gemm_ceiling.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "kernels/cpu/philox.h"
#include "src/core/error.h"

namespace sy {

namespace {

using Clock = std::chrono::steady_clock;

// Uniform values in [-1, 1) from Philox (no std:: distribution: same data on every platform).
void fill_random(std::vector<float>& v, uint64_t stream) {
  for (size_t i = 0; i < v.size(); i += 4) {
    const philox::Counter c =
        philox::philox4x32({{static_cast<uint32_t>(i), static_cast<uint32_t>(i >> 32),
                             static_cast<uint32_t>(stream), 0u}},
                           philox::key_from_seed(7));
    for (size_t j = 0; j < 4 && i + j < v.size(); ++j)
      v[i + j] = static_cast<float>(static_cast<double>(c.v[j]) * (2.0 / 4294967296.0) - 1.0);
  }
}

}  // namespace

std::vector<GemmShape> model_gemm_shapes(const Config& cfg) {
  const int N = static_cast<int>(cfg.train.micro_batch * cfg.model.seq_len);
  const int C = static_cast<int>(cfg.model.d_model), V = static_cast<int>(cfg.model.vocab_size);
  const int E = static_cast<int>(cfg.moe.num_experts), K = static_cast<int>(cfg.moe.top_k);
  const int F = static_cast<int>(cfg.moe.ffn_hidden), S = static_cast<int>(cfg.moe.shared_experts);
  const int R = std::max(1, N * K / E);
  std::vector<GemmShape> out;
  // y[rows,OC] = x[rows,IC] W[IC,OC], and its backward dx = dy W^T, dW = x^T dy.
  const int L = static_cast<int>(cfg.model.n_layers);
  auto linear = [&](const std::string& what, int rows, int IC, int OC, int calls) {
    out.push_back({what + " fwd", rows, OC, IC, false, false, calls});
    out.push_back({what + " dx", rows, IC, OC, false, true, calls});
    out.push_back({what + " dW", IC, OC, rows, true, false, calls});
  };
  linear("wqkv", N, C, 3 * C, L);
  linear("wo", N, C, C, L);
  linear("router", N, C, E, L);
  linear("expert W1|W3", R, C, F, 2 * L * E);
  linear("expert W2", R, F, C, L * E);
  if (S > 0) {
    linear("shared W1|W3", N, C, F, 2 * L * S);
    linear("shared W2", N, F, C, L * S);
  }
  // logits[N,V] = xf[N,C] Head[V,C]^T; dxf = dlogits Head; dHead = dlogits^T xf.
  out.push_back({"head fwd", N, V, C, false, true, 1});
  out.push_back({"head dx", N, C, V, false, false, 1});
  out.push_back({"head dW", V, C, N, true, false, 1});
  return out;
}

std::vector<GemmTiming> time_gemms(const std::vector<GemmShape>& shapes, double min_seconds) {
  const int P = std::max(1, omp_get_max_threads());
  // OpenBLAS's thread count is the process's: given back however this returns (a throw left it at
  // P, and later GEMMs ran P BLAS threads inside each OpenMP thread).
  struct RestoreBlasThreads {
    int before = openblas_get_num_threads();
    ~RestoreBlasThreads() { openblas_set_num_threads(before); }
  } restore;
  std::vector<GemmTiming> out(shapes.size());
  std::vector<float> a, b;
  std::vector<std::vector<float>> c(static_cast<size_t>(P));  // one output per core
  // Median seconds of `run` after a warm-up (thread pools up, caches and pages touched).
  auto time_it = [&](auto&& run) {
    for (int i = 0; i < 3; ++i) run();
    std::vector<double> times;
    const auto t_start = Clock::now();
    while (times.size() < 5 ||
           std::chrono::duration<double>(Clock::now() - t_start).count() < min_seconds) {
      const auto t0 = Clock::now();
      run();
      times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    std::nth_element(times.begin(), times.begin() + static_cast<long>(times.size() / 2),
                     times.end());
    return times[times.size() / 2];
  };
  // Two passes, not two modes per shape: OpenBLAS's pool keeps spinning for a while after a
  // threaded call, and would steal the cores from the per-core calls that follow it.
  for (int pass = 0; pass < 2; ++pass) {
    const bool per_core = pass == 0;
    openblas_set_num_threads(per_core ? 1 : P);
    for (size_t i = 0; i < shapes.size(); ++i) {
      const GemmShape& s = shapes[i];
      SY_CHECK(s.M > 0 && s.N > 0 && s.K > 0, "empty GEMM shape " << s.what);
      a.resize(static_cast<size_t>(s.M) * s.K);
      b.resize(static_cast<size_t>(s.K) * s.N);
      for (auto& ci : c) ci.assign(static_cast<size_t>(s.M) * s.N, 0.0f);
      fill_random(a, 1);
      fill_random(b, 2);
      const int lda = s.trans_a ? s.M : s.K, ldb = s.trans_b ? s.K : s.N;
      auto call = [&](float* out_c) {
        cblas_sgemm(CblasRowMajor, s.trans_a ? CblasTrans : CblasNoTrans,
                    s.trans_b ? CblasTrans : CblasNoTrans, s.M, s.N, s.K, 1.0f, a.data(), lda,
                    b.data(), ldb, 0.0f, out_c, s.N);
      };
      GemmTiming& t = out[i];
      t.shape = s;
      t.threads = P;
      if (per_core) {
        t.per_core_s = time_it([&] {
#pragma omp parallel num_threads(P)
          call(c[static_cast<size_t>(omp_get_thread_num())].data());
        });
      } else {
        t.threaded_s = time_it([&] { call(c[0].data()); });
      }
    }
  }
  return out;
}

double best_gflops(const std::vector<GemmTiming>& t) {
  double best = 0;
  for (const auto& g : t) best = std::max(best, g.gflops());
  return best;
}

double weighted_gflops(const std::vector<GemmTiming>& t) {
  double flops = 0, secs = 0;
  for (const auto& g : t) {
    flops += g.shape.calls * g.shape.flops();
    secs += g.shape.calls * g.seconds();
  }
  return secs > 0 ? flops / secs * 1e-9 : 0.0;
}

}  // namespace sy
