// The seeded inputs of the GPU MoE-layer tests (tests/gpu/model/test_cuda_moe.cpp `CudaMoeLayer.*`,
// tests/gpu/nccl/test_moe_exchange.cpp `MoeExchange.*`), host-only (no CUDA header): the layer's
// dims per case, its global weights and a micro-batch. Those tests compare the GPU's routing
// counts with the CPU's exactly, so the CPU test tests/margins/test_gpu_margins.cpp measures the
// near-ties (top-k, group and capacity cuts) of exactly these inputs. `round` is what a T-typed
// GPU tensor holds (gputest::representable<T>; identity for float), so both sides see the same
// values.
#pragma once

#include <random>
#include <utility>
#include <vector>

#include "router_cases.h"
#include "src/model/moe.h"

namespace sy::gputest {

using RoundFn = std::vector<float> (*)(const std::vector<float>&);

// The global weights of a layer (all E experts, S shared experts; shared arrays hold one extra
// element so that S = 0 still has storage).
struct MoeWeightsHost {
  std::vector<float> router, bias, w1, w3, w2, sw1, sw3, sw2;
};

inline MoeWeightsHost random_moe_weights(const MoeDims& d, unsigned seed, RoundFn round) {
  const int C = d.C, E = d.E, F = d.F, S = d.S;
  std::mt19937 rng(seed);
  MoeWeightsHost w;
  w.router = round(random_floats(rng, C * E, -0.5f, 0.5f));
  w.bias = random_floats(rng, E, -0.01f, 0.01f);
  w.w1 = round(random_floats(rng, E * C * F, -0.2f, 0.2f));
  w.w3 = round(random_floats(rng, E * C * F, -0.2f, 0.2f));
  w.w2 = round(random_floats(rng, E * F * C, -0.2f, 0.2f));
  w.sw1 = round(random_floats(rng, S * C * F + 1, -0.2f, 0.2f));
  w.sw3 = round(random_floats(rng, S * C * F + 1, -0.2f, 0.2f));
  w.sw2 = round(random_floats(rng, S * F * C + 1, -0.2f, 0.2f));
  return w;
}

// A micro-batch m[N,C] and its output gradient dout[N,C].
struct MoeBatch {
  std::vector<float> m, dout;
};
inline MoeBatch random_moe_batch(const MoeDims& d, int N, unsigned seed, RoundFn round) {
  std::mt19937 rng(seed);
  MoeBatch b;
  b.m = round(random_floats(rng, N * d.C));
  b.dout = round(random_floats(rng, N * d.C));
  return b;
}

// ---- test_cuda_moe.cpp: one GPU, every expert local ----

inline constexpr int kMoeCaseB = 2, kMoeCaseT = 9;  // micro-batch: B sequences of T tokens
inline constexpr unsigned kMoeCaseWeightSeed = 31, kMoeCaseBatchSeed = 32;

struct MoeCase {
  int S;
  AuxScope scope;
  double capacity_factor = 0.0;  // 0: dropless
  // The router's rule beyond softmax top-k (SPEC section 1): sigmoid scores (no z-loss), the gate
  // scale, group-limited selection (E = 6 experts in route_groups groups, route_groups_topk kept).
  bool sigmoid = false;
  double gate_scale = 1.0;
  int route_groups = 1, route_groups_topk = 1;
};

inline MoeDims moe_case_dims(const MoeCase& mc) {
  MoeDims d;
  d.C = 32;
  d.E = 6;
  d.K = 2;
  d.F = 24;
  d.S = mc.S;
  d.norm_topk = true;
  d.aux_coeff = 1e-2;
  d.z_coeff = mc.sigmoid ? 0.0 : 1e-3;
  d.aux_scope = mc.scope;
  d.score = mc.sigmoid ? Score::kSigmoid : Score::kSoftmax;
  d.gate_scale = mc.gate_scale;
  d.route_groups = mc.route_groups;
  d.route_groups_topk = mc.route_groups_topk;
  d.has_capacity = mc.capacity_factor > 0;
  d.capacity_factor = mc.capacity_factor;
  return d;
}

// The cases of CudaMoeLayer.MatchesCpuFp32 (fp32), .MatchesCpuBf16 (bf16) and
// .RouterVariantsMatchCpu (each in fp32 and bf16): sigmoid scores with the gate scale,
// group-limited selection (3 groups of 2, 2 kept), and both with a shared expert and a binding
// capacity.
inline std::vector<MoeCase> moe_fp32_cases() {
  return {{0, AuxScope::kSequence}, {1, AuxScope::kMicroBatch}, {0, AuxScope::kSequence, 0.75}};
}
inline std::vector<MoeCase> moe_bf16_cases() {
  return {{0, AuxScope::kSequence}, {2, AuxScope::kMicroBatch}, {1, AuxScope::kSequence, 0.75}};
}
inline std::vector<MoeCase> moe_variant_cases() {
  MoeCase sig{0, AuxScope::kSequence};
  sig.sigmoid = true;
  sig.gate_scale = 2.5;
  MoeCase groups{0, AuxScope::kMicroBatch};
  groups.route_groups = 3;
  groups.route_groups_topk = 2;
  MoeCase both{1, AuxScope::kSequence, 0.75};
  both.sigmoid = true;
  both.gate_scale = 2.5;
  both.route_groups = 3;
  both.route_groups_topk = 2;
  return {sig, groups, both};
}

// ---- test_moe_exchange.cpp: E/P experts per rank, each rank its own micro-batch ----

inline constexpr unsigned kExchangeWeightSeed = 41;

inline MoeDims exchange_case_dims(int S, double capacity_factor) {
  MoeDims d;
  d.C = 32;
  d.E = 4;
  d.K = 2;
  d.F = 24;
  d.S = S;
  d.aux_coeff = 1e-2;
  d.z_coeff = 1e-3;
  d.has_capacity = capacity_factor > 0;
  d.capacity_factor = capacity_factor;
  return d;
}
// Rank q's micro-batch (every rank draws every rank's, for the CPU reference).
inline MoeBatch exchange_batch(const MoeDims& d, int N, int q, RoundFn round) {
  return random_moe_batch(d, N, 100 + static_cast<unsigned>(q), round);
}
// The capacity factors of MoeExchange's cases (dropless and binding); routing does not depend
// on the other fields (chunks, shared experts, nodes, delays).
inline constexpr double kExchangeCapacityFactors[] = {0.0, 0.75};

}  // namespace sy::gputest
