// The tiny model and the batches of the GPU model tests (tests/gpu/model/test_cuda_model.cpp
// `CudaModel.*`), host-only (no CUDA header), so that the CPU test
// tests/margins/test_gpu_margins.cpp measures the near-ties of the routing those tests compare
// exactly (the router-bias case's selected counts, every step).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "src/config/config.h"

namespace sy::gputest {

inline Config tiny_config(Precision precision, int shared_experts, double capacity_factor = 0) {
  Config cfg;
  cfg.model.vocab_size = 61;
  cfg.model.d_model = 32;
  cfg.model.n_layers = 2;
  cfg.model.n_heads = 4;
  cfg.model.seq_len = 12;
  cfg.moe.num_experts = 5;
  cfg.moe.top_k = 2;
  cfg.moe.ffn_hidden = 24;
  cfg.moe.shared_experts = shared_experts;
  if (capacity_factor > 0) cfg.moe.capacity_factor = capacity_factor;
  cfg.train.steps = 10;
  cfg.train.global_batch = 3;
  cfg.train.micro_batch = 3;
  cfg.train.lr = 3e-3;
  cfg.train.min_lr = 3e-4;
  cfg.train.warmup_steps = 2;
  cfg.train.grad_clip = 1.0;
  cfg.train.precision = precision;
  cfg.device = Device::kCuda;
  cfg.run.seed = 4321;
  return cfg;
}

// The batch of a step (`draw` picks another batch for the same step).
inline std::vector<int32_t> batch_tokens(const Config& cfg, int step, int draw = 0) {
  std::mt19937 rng(1000 + step + 7919 * draw);
  std::uniform_int_distribution<int32_t> d(0, static_cast<int32_t>(cfg.model.vocab_size) - 1);
  std::vector<int32_t> t(cfg.train.global_batch * (cfg.model.seq_len + 1));
  for (auto& x : t) x = d(rng);
  return t;
}

// The "router-bias updates" case of CudaModel.TenStepsMatchCpuFp32Options (SPEC 3's sign rule,
// from the selected counts of each step, which that test compares exactly).
inline Config with_bias_updates(Config cfg) {
  cfg.moe.bias_update_rate = 1e-3;
  return cfg;
}

}  // namespace sy::gputest
