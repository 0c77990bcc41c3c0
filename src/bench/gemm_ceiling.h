// The machine's fp32 GEMM ceiling for a model (issue 7): cblas_sgemm timed on the matrix shapes
// the model's forward and backward actually multiply, with the same BLAS threads a training run
// uses, so "achieved / ceiling" says how close the trainer gets to what this machine's BLAS can do
// on this model, not on some unrelated square.
//
// Letters: N = micro_batch * seq_len tokens of one forward, C d_model, E experts, K top-k, F expert
// hidden, S shared experts, V vocab, R = N K / E rows of an expert under perfectly even routing.
#pragma once

#include <string>
#include <vector>

#include "src/config/config.h"

namespace sy {

// One product C[M,N] = op(A)[M,K] op(B)[K,N] (row-major; the trans flags as cblas takes them).
struct GemmShape {
  std::string what;  // e.g. "expert W1 fwd"
  int M = 0, N = 0, K = 0;
  bool trans_a = false, trans_b = false;
  int calls = 1;  // how often one micro-batch's forward + backward runs this product
  double flops() const { return 2.0 * M * N * K; }
};

// The linear layers' products of one micro-batch, forward and backward (dx = dy W^T,
// dW = x^T dy): wqkv, wo, router, expert W1/W3/W2 at R rows, shared experts at N rows, LM head.
// Attention's per-head [T,T] products are left out (they are small and counted separately).
std::vector<GemmShape> model_gemm_shapes(const Config& cfg);

// Two ways to keep P cores busy with one shape, both plain cblas_sgemm:
//   threaded   one call with OpenBLAS's own P threads (what a naive caller gets),
//   per core   P single-threaded calls at once, one per core, each its own full product
//              (P * flops per call time: the rate of every core running this shape's kernel).
// The better of the two is the machine's rate for the shape.
struct GemmTiming {
  GemmShape shape;
  int threads = 1;        // P
  double threaded_s = 0;  // median time of one threaded call
  double per_core_s = 0;  // median time of P concurrent single-threaded calls
  double threaded_gflops() const { return shape.flops() / threaded_s * 1e-9; }
  double per_core_gflops() const { return threads * shape.flops() / per_core_s * 1e-9; }
  double gflops() const {
    return threaded_gflops() > per_core_gflops() ? threaded_gflops() : per_core_gflops();
  }
  double seconds() const { return shape.flops() / (gflops() * 1e9); }  // at the better rate
};

// Times each shape on random data (warm-up, then the median of calls over >= min_seconds per
// mode) with P = omp_get_max_threads(). OpenBLAS's thread count is restored afterwards.
std::vector<GemmTiming> time_gemms(const std::vector<GemmShape>& shapes, double min_seconds);

// The ceiling the bench reports: the best GFLOP/s over the timed shapes (the fastest this BLAS
// runs any product this model needs). And the rate of a step that did nothing but its linear
// layers' products at BLAS speed: sum(calls * flops) / sum(calls * seconds).
double best_gflops(const std::vector<GemmTiming>& t);
double weighted_gflops(const std::vector<GemmTiming>& t);

}  // namespace sy
