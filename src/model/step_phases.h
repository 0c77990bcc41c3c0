// The parts of a GPU training step that `switchyard bench train --device cuda` times separately
// (CudaModel and CudaMoeLayer mark them on their stream with a cuda::PhaseTimer): what a user
// reads to see where a step goes. Plain C++ so the printing side needs no CUDA.
#pragma once

#include <array>

namespace sy {

enum class StepPhase : int {
  kEmbedding,      // token upload, embedding lookup and its backward
  kNorms,          // RMSNorms and residual adds
  kAttnGemms,      // the qkv and output projections (cuBLAS), forward and backward
  kRope,           // rotary embedding
  kAttnCore,       // scores, causal softmax, weighted values (strided-batched GEMMs + kernels)
  kRouter,         // router GEMM, scores and top-k, aux/z losses, the dispatch layout
  kTokenMoves,     // gathering rows to their experts, combining them back (and their backward)
  kExpertGemms,    // the routed experts: grouped GEMMs and SwiGLU
  kSharedExperts,  // the shared experts
  kHeadLoss,       // final projection to the vocabulary and cross-entropy
  kOptimizer,      // gradient norm, clipping, AdamW, the bf16 copy of the weights
  kHostWait,       // the GPU idle, waiting for the host (routing counts, losses, norms read back)
  kCount
};

inline constexpr std::array<const char*, static_cast<int>(StepPhase::kCount)> kStepPhaseNames = {
    "embedding",
    "norms + residuals",
    "attention projections",
    "RoPE",
    "attention core",
    "MoE router",
    "MoE token moves",
    "MoE expert GEMMs",
    "MoE shared experts",
    "head + loss",
    "optimizer",
    "GPU idle (host)"};

}  // namespace sy
