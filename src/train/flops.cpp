#include "src/train/flops.h"

#include <cstdio>

namespace sy {

StepFlops model_flops(const Config& cfg, int64_t sequences) {
  const auto& m = cfg.model;
  const auto& moe = cfg.moe;
  const double C = static_cast<double>(m.d_model), L = static_cast<double>(m.n_layers),
               T = static_cast<double>(m.seq_len), V = static_cast<double>(m.vocab_size),
               E = static_cast<double>(moe.num_experts), F = static_cast<double>(moe.ffn_hidden),
               K = static_cast<double>(moe.top_k), S = static_cast<double>(moe.shared_experts);
  const double seqs = static_cast<double>(sequences);
  StepFlops f;
  // Tied or not, the head is one [V,C] product per token (tying shares storage, not work).
  f.matmul_params_per_token = L * (4.0 * C * C + C * E + 3.0 * C * F * (K + S)) + V * C;
  f.matmul = 6.0 * f.matmul_params_per_token * seqs * T;
  f.attention = 6.0 * L * T * T * C * seqs;
  return f;
}

std::string flops_formula(const Config& cfg) {
  const StepFlops f = step_flops(cfg);
  const auto& m = cfg.model;
  const auto& moe = cfg.moe;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "6*P_tok*GB*T + 6*L*T^2*C*GB with P_tok = L(4C^2 + CE + 3CF(K+S)) + VC = %.0f "
                "(L=%lld C=%lld E=%lld F=%lld K=%lld S=%lld V=%lld T=%lld GB=%lld): "
                "%.4g + %.4g = %.4g FLOP/step",
                f.matmul_params_per_token, static_cast<long long>(m.n_layers),
                static_cast<long long>(m.d_model), static_cast<long long>(moe.num_experts),
                static_cast<long long>(moe.ffn_hidden), static_cast<long long>(moe.top_k),
                static_cast<long long>(moe.shared_experts), static_cast<long long>(m.vocab_size),
                static_cast<long long>(m.seq_len), static_cast<long long>(cfg.train.global_batch),
                f.matmul, f.attention, f.total());
  return buf;
}

}  // namespace sy
