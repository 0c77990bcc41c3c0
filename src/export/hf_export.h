// `switchyard ckpt export --format hf`: a checkpoint as a directory that Hugging Face transformers
// loads with AutoModelForCausalLM.from_pretrained(dir): config.json, model.safetensors (float32,
// the hub's per-expert layout, which every transformers version reads), and for a SentencePiece
// tokenizer tokenizer.model + tokenizer_config.json.
//
// The architecture is one whose math equals SPEC section 1 for the checkpoint:
//   Mixtral   (MixtralForCausalLM)   routed experts only, moe.norm_topk: true. Mixtral's router
//             is softmax over all experts, top-k, renormalised -- SPEC's with b = 0.
//   Qwen2-MoE (Qwen2MoeForCausalLM)  shared experts and/or moe.norm_topk: false (its
//             norm_topk_prob). Its shared expert is one SwiGLU whose output is multiplied by
//             sigmoid(x . g): SPEC's S shared experts are concatenated along the hidden dimension,
//             g = 0 so the gate is sigmoid(0) = 0.5 exactly, and the shared down_proj is doubled
//             (exact in floating point). Without shared experts the shared MLP has hidden size 0.
//             Its q/k/v biases are written as zeros (x + 0 = x).
// Both: no attention biases elsewhere, rotate-half RoPE with pairs (i, i + hd/2) and theta =
// model.rope_theta, RMSNorm eps = model.norm_eps, num_key_value_heads = num_attention_heads,
// tie_word_embeddings = model.tie_embeddings, a sliding window of model.seq_len in every layer
// (what `switchyard sample` attends over past seq_len tokens; within seq_len it is the causal
// mask); every config value written explicitly (each
// architecture's own defaults differ: Mixtral's rope theta is 1e6). Weights are [out, in]
// (PyTorch's nn.Linear), the transpose of SPEC's [in, out].
//
// Not representable (exit 2 naming each; --allow-approximate writes the nearest model and says
// what changes): a non-zero router bias (selection by p + b), capacity dropping, group-limited
// routing (moe.route_groups), moe.gate_scale other than a power of two (a power of two is folded
// into the routed down_proj exactly). moe.score: sigmoid is refused either way: no transformers
// architecture with standard attention scores experts by sigmoid (DeepSeek-V3's uses MLA).
#pragma once

#include <string>
#include <vector>

#include "comm/mpi.h"
#include "src/ckpt/checkpoint.h"

namespace sy {

struct HfExportOptions {
  std::string output_dir;
  bool allow_approximate = false;
  ckpt::ReadProgress progress;  // reading the checkpoint
};

struct HfExportReport {
  std::string architecture;                 // "MixtralForCausalLM" | "Qwen2MoeForCausalLM"
  std::vector<std::string> approximations;  // what --allow-approximate changed
  std::vector<std::string> files;           // written, in the output directory
  std::vector<std::string> removed;         // an earlier export's files this one does not write
  std::vector<std::string> notes;           // what a transformers user must know (exact anyway)
  int64_t tensors = 0;  // rank 0's count (0 on the other ranks, which write nothing)
  int64_t step = 0;
};

// Collective (every rank verifies and reads the checkpoint; rank 0 writes). UsageError naming
// what cannot be represented, or the output directory when it cannot be written.
//
// The directory ends holding exactly one export: the export's files (config.json,
// model.safetensors, tokenizer.model, tokenizer_config.json) that this export does not write are
// removed as an earlier export's; every other file is left alone, and a directory holding a file
// that transformers would load with the export's (tokenizer.json, a weight index, ...) is
// refused before any work. A failure while writing (a full disk) leaves the directory as it was:
// no .tmp, and no directory that the export created.
HfExportReport export_hf(MPI_Comm comm, const std::string& checkpoint, const HfExportOptions& opt);

}  // namespace sy
