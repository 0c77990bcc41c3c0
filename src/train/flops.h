// Model FLOPs of a training step (issue 7): the work the model itself asks for, independent of how
// well an implementation does it, so that achieved GFLOP/s compares runs, layouts and machines.
//
// Counting, per optimizer step of GB sequences of T tokens (the convention of Kaplan et al. and of
// the MFU figures in Megatron-LM and PaLM): every matrix parameter a token is multiplied by costs
// 2 FLOPs forward and 4 backward (input and weight gradients), so
//   matmul    = 6 * P_tok * GB * T
//   P_tok     = L * (4 C^2 + C E + 3 C F (K + S)) + V C
//               (wqkv 3C^2 and wo C^2; router C E; SwiGLU W1, W3, W2 of the K routed experts a
//               token uses plus the S shared ones; the LM head V C; the embedding lookup is not
//               a product)
//   attention = 6 * L * T^2 * C * GB
//               (q k^T and att v are 2 T^2 C FLOPs each forward for the full square, twice that
//               backward: 12 L T^2 C per sequence; only the causal half is needed, so 6)
// Capacity drops are not subtracted: this is the model's nominal work.
#pragma once

#include <cstdint>
#include <string>

#include "src/config/config.h"

namespace sy {

struct StepFlops {
  double matmul_params_per_token = 0;  // P_tok
  double matmul = 0;                   // 6 * P_tok * tokens
  double attention = 0;                // 6 * L * T^2 * C * sequences
  double total() const { return matmul + attention; }
};

// The FLOPs of forward + backward over `sequences` sequences of cfg.model.seq_len tokens.
StepFlops model_flops(const Config& cfg, int64_t sequences);

// The same for one optimizer step (cfg.train.global_batch sequences).
inline StepFlops step_flops(const Config& cfg) {
  return model_flops(cfg, cfg.train.global_batch);
}

// The formula with this config's numbers, for printing, e.g.
//   "6 * P_tok * GB*T + 6 * L * T^2 * C * GB, P_tok = L (4C^2 + CE + 3CF(K+S)) + VC = ..."
std::string flops_formula(const Config& cfg);

}  // namespace sy
