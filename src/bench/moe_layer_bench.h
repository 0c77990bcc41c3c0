// `switchyard bench moe-layer`: forward+backward time of one MoE layer on the GPU (the CUDA
// backend's CudaMoeLayer, src/model/cuda_moe.h) and its achieved TFLOP/s; the expert GEMMs alone
// (the grouped cuBLAS calls of the layer's real routing, 9 per step); and the ceiling: the same
// 9 products as dense cuBLAS GEMMs over all A = tokens*top_k rows at once (same FLOPs, no
// grouping). The figure to watch is expert GEMMs / dense ceiling (target >= 70%).
//
// FLOPs (multiply-add = 2), N tokens, C = d, F = ffn, E experts, K = top_k:
//   expert GEMMs  = 3 projections * 2*N*K*C*F forward, x3 for forward+backward = 18*N*K*C*F
//   router        = 2*N*C*E forward, x3 = 6*N*C*E
//   layer         = expert GEMMs + router (the elementwise ops are not counted)
// Without the CUDA backend built in, or without a usable GPU, it throws UsageError (exit 2) with
// the reason.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

#include "src/config/config.h"

namespace sy {

struct MoeLayerBenchOptions {
  int tokens = 8192;
  int d = 2048;
  int ffn = 1408;
  int experts = 16;
  int top_k = 2;
  Precision precision = Precision::kBf16;
  int warmup = 3;
  int iters = 20;
  uint64_t seed = 1234;
};

struct MoeLayerBenchResult {
  std::string device;
  double layer_ms = 0, layer_tflops = 0;      // forward+backward of the layer
  double experts_ms = 0, experts_tflops = 0;  // the 9 grouped GEMMs
  double dense_ms = 0, dense_tflops = 0;      // the 9 GEMMs dense over all A rows
  double layer_flops = 0, expert_flops = 0;
  bool grouped_fallback = false;   // cuBLAS rejected the grouped call: one GEMM per expert ran
  int min_rows = 0, max_rows = 0;  // rows per expert of the timed routing
};

MoeLayerBenchResult run_moe_layer_bench(const MoeLayerBenchOptions& opt);
void print_moe_layer_bench(const MoeLayerBenchOptions& opt, const MoeLayerBenchResult& r,
                           std::ostream& os);

}  // namespace sy
