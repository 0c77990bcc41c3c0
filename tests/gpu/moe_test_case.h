// One MoE layer case for the GPU tests: random global weights (rounded to what a T-typed GPU
// tensor holds, so both sides see the same values), the CPU MoeLayer<float> reference of a
// micro-batch (output, losses, counts, dm and every weight gradient), and the device copies of
// the weights of a block of experts with zeroed gradient buffers. Used by the one-GPU layer test
// (tests/gpu/model) and the expert-parallel ones through comm::GpuExchange (tests/gpu/nccl).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "gpu_test_util.h"
#include "moe_case_inputs.h"
#include "src/model/cuda_moe.h"
#include "src/model/moe.h"

namespace sy::gputest {

// The global weights (moe_case_inputs.h) as a T-typed GPU tensor holds them.
template <class T>
MoeWeightsHost random_moe_weights(const MoeDims& d, unsigned seed) {
  return random_moe_weights(d, seed, &representable<T>);
}

// Everything the CPU layer computes for one micro-batch (gradients of all E experts).
struct MoeReference {
  std::vector<float> out, dm, g_router, g_w1, g_w3, g_w2, g_sw1, g_sw3, g_sw2;
  MoeLoss loss;
  MoeStats stats;
};

// The CPU MoeLayer<float> (d: the whole layer) on m[B*T_, C] with output gradient dout.
inline MoeReference cpu_moe_reference(const MoeDims& d, const MoeWeightsHost& wh,
                                      const std::vector<float>& m, const std::vector<float>& dout,
                                      int B, int T_, const LossScale& s) {
  const int N = B * T_, C = d.C, E = d.E, F = d.F, S = d.S;
  auto cw = [](const std::vector<float>& v) { return const_cast<float*>(v.data()); };
  MoeWeights<float> w{cw(wh.router),
                      cw(wh.bias),
                      cw(wh.w1),
                      cw(wh.w3),
                      cw(wh.w2),
                      S ? cw(wh.sw1) : nullptr,
                      S ? cw(wh.sw3) : nullptr,
                      S ? cw(wh.sw2) : nullptr};
  MoeReference r;
  r.g_router.assign(C * E, 0.0f);
  r.g_w1.assign(E * C * F, 0.0f);
  r.g_w3.assign(E * C * F, 0.0f);
  r.g_w2.assign(E * F * C, 0.0f);
  r.g_sw1.assign(S * C * F + 1, 0.0f);
  r.g_sw3.assign(S * C * F + 1, 0.0f);
  r.g_sw2.assign(S * F * C + 1, 0.0f);
  MoeWeights<float> g{r.g_router.data(), nullptr,        r.g_w1.data(),  r.g_w3.data(),
                      r.g_w2.data(),     r.g_sw1.data(), r.g_sw3.data(), r.g_sw2.data()};
  MoeLayer<float> cpu(d);
  r.out.assign(N * C, 0.0f);
  r.dm.assign(N * C, 0.0f);
  r.loss = cpu.forward(r.out.data(), m.data(), B, T_, w, s, &r.stats);
  cpu.backward(r.dm.data(), g, dout.data(), m.data(), w, s);
  return r;
}

// experts [e0, e0 + L) of v ([E, rows, cols] flattened; per_expert = rows * cols elements).
inline std::vector<float> expert_block(const std::vector<float>& v, int e0, int L, int per_expert) {
  return std::vector<float>(v.begin() + static_cast<long>(e0) * per_expert,
                            v.begin() + static_cast<long>(e0 + L) * per_expert);
}

// The device side of a layer holding experts [e0, e0 + L): weights in T, fp32 gradient buffers
// (zeros).
template <class T>
struct MoeDeviceWeights {
  cuda::DeviceBuffer<T> router, w1, w3, w2, sw1, sw3, sw2;
  cuda::DeviceBuffer<float> bias, g_router, g_w1, g_w3, g_w2, g_sw1, g_sw3, g_sw2;
  int S = 0;

  MoeDeviceWeights(const MoeDims& d, const MoeWeightsHost& wh, int e0, int L) : S(d.S) {
    const int CF = d.C * d.F;
    router = upload_as<T>(wh.router);
    bias = upload_as<float>(wh.bias);
    w1 = upload_as<T>(expert_block(wh.w1, e0, L, CF));
    w3 = upload_as<T>(expert_block(wh.w3, e0, L, CF));
    w2 = upload_as<T>(expert_block(wh.w2, e0, L, CF));
    sw1 = upload_as<T>(wh.sw1);
    sw3 = upload_as<T>(wh.sw3);
    sw2 = upload_as<T>(wh.sw2);
    auto zeros = [](size_t n) { return upload_as<float>(std::vector<float>(n, 0.0f)); };
    g_router = zeros(wh.router.size());
    g_w1 = zeros(static_cast<size_t>(L) * CF);
    g_w3 = zeros(static_cast<size_t>(L) * CF);
    g_w2 = zeros(static_cast<size_t>(L) * CF);
    g_sw1 = zeros(wh.sw1.size());
    g_sw3 = zeros(wh.sw3.size());
    g_sw2 = zeros(wh.sw2.size());
  }
  CudaMoeWeights<T> weights() {
    return {router.data(),
            bias.data(),
            w1.data(),
            w3.data(),
            w2.data(),
            S ? sw1.data() : nullptr,
            S ? sw3.data() : nullptr,
            S ? sw2.data() : nullptr};
  }
  CudaMoeGrads grads() {
    return {g_router.data(), g_w1.data(),  g_w3.data(), g_w2.data(),
            g_sw1.data(),    g_sw3.data(), g_sw2.data()};
  }
};

}  // namespace sy::gputest
