// The seeded inputs of the GPU router tests (test_moe_ops.cpp `Shapes/Router.*`,
// test_router_variants.cpp `Rules/RouterVariants.*`), host-only (no CUDA header) so that the
// CPU test tests/margins/test_gpu_margins.cpp measures the near-ties of exactly these inputs:
// those tests compare the GPU's top-k with the CPU's exactly, and the GPU's fp32 scores differ
// from the CPU's by a few ulps, so a pair of scores closer than that could flip the order.
#pragma once

#include <cstdint>
#include <ostream>
#include <random>
#include <vector>

#include "kernels/cpu/router_rule.h"

namespace sy::gputest {

inline std::vector<float> random_floats(std::mt19937& rng, size_t n, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

inline std::vector<int32_t> random_ints(std::mt19937& rng, size_t n, int32_t hi_exclusive) {
  std::uniform_int_distribution<int32_t> d(0, hi_exclusive - 1);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// A router test's inputs: logits[N,E], bias[E] (empty: none, and not drawn), and the gradients
// of the backward dgates[N,K], dprobs[N,E], dlse[N].
struct RouterInputs {
  std::vector<float> logits, bias, dgates, dprobs, dlse;
};

inline RouterInputs draw_router_inputs(unsigned seed, int N, int E, int K, bool with_bias) {
  std::mt19937 rng(seed);
  RouterInputs in;
  in.logits = random_floats(rng, N * E, -3.0f, 3.0f);
  if (with_bias) in.bias = random_floats(rng, E, -0.05f, 0.05f);
  in.dgates = random_floats(rng, N * K);
  in.dprobs = random_floats(rng, N * E);
  in.dlse = random_floats(rng, N);
  return in;
}

// test_moe_ops.cpp: the plain softmax top-k router. E = 13 (a partial warp), 40 (two experts
// per lane), 64 with K = 8.
struct RouterCase {
  int N, E, K;
  bool norm_topk, with_bias;
};
inline constexpr RouterCase kRouterCases[] = {
    {37, 13, 3, true, true},
    {37, 13, 1, false, false},
    {21, 40, 2, true, false},
    {9, 64, 8, false, true},
};
// The bias is drawn whether used or not (used only with_bias).
inline RouterInputs router_case_inputs(const RouterCase& c) {
  return draw_router_inputs(11, c.N, c.E, c.K, true);
}

// test_router_variants.cpp: group-limited selection, sigmoid scores, the gate scale.
struct VariantCase {
  const char* name;
  int N, E, K;
  RouterRule rule;
  bool with_bias;
};
inline void PrintTo(const VariantCase& c, std::ostream* os) {
  *os << c.name;
}

// E = 64 in 64 groups and E = 80 in 40 use the second group per lane (groups 32..63).
inline constexpr VariantCase kVariants[] = {
    {"groups4_keep2", 37, 16, 4, {.groups = 4, .groups_topk = 2}, true},
    {"groups8_keep2_raw", 37, 40, 3, {.norm_topk = false, .groups = 8, .groups_topk = 2}, false},
    {"groups4_keep1_k2", 29, 16, 2, {.groups = 4, .groups_topk = 1}, true},
    {"groups64_keep8", 21, 64, 8, {.groups = 64, .groups_topk = 8}, true},
    {"groups40_keep3", 9, 80, 6, {.groups = 40, .groups_topk = 3}, true},
    {"groups4_keep4_is_plain", 13, 16, 4, {.groups = 4, .groups_topk = 4}, true},
    {"sigmoid", 37, 13, 3, {.sigmoid = true}, true},
    {"sigmoid_raw_scaled",
     21,
     40,
     2,
     {.sigmoid = true, .norm_topk = false, .gate_scale = 2.5},
     false},
    {"sigmoid_groups_scaled",
     37,
     64,
     8,
     {.sigmoid = true, .gate_scale = 2.5, .groups = 8, .groups_topk = 4},
     true},
    {"softmax_scaled", 9, 16, 4, {.gate_scale = 0.5}, true},
};

inline RouterInputs variant_inputs(const VariantCase& c) {
  return draw_router_inputs(7 + c.E + c.K, c.N, c.E, c.K, c.with_bias);
}

}  // namespace sy::gputest
