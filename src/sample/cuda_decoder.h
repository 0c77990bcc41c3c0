// Incremental decoding on one GPU (`switchyard sample --device cuda`; CUDA build only): the CPU
// Decoder of decoder.h step for step -- the same prefill rule, the same sliding window of the
// last W = seq_len positions past seq_len, the same dropless routing with the router bias in the
// selection -- built from the CUDA kernels (kernels/cuda: embedding, RMSNorm, RoPE at a position,
// cuBLAS matmuls, the key/value cache store and the attention over it) and the GPU MoE layer
// (src/model/cuda_moe.h, has_capacity = false). fp32 throughout; the parameters are uploaded once
// and stay on the device with the [L, cache_rows(), C] key and value caches; only the tokens go up
// and the logits [V] of the last token come back per feed.
//
// Status: written and compiled, not yet run on a GPU (tests/gpu/sample compares it with the CPU
// Decoder).
//
// Letters as decoder.h: C d_model, NH heads, V vocab, W the window, L layers, n tokens fed.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "src/config/config.h"
#include "src/sample/decoder.h"

namespace sy {

class CudaDecoder final : public TokenDecoder {
 public:
  // A prefill of n tokens needs n*NH*W attention scores (2 GiB for n = W = 4096 and 32 heads):
  // its queries go through the attention in groups whose scores fit this many floats (at least
  // one query row per group).
  static constexpr long kAttentionScratchFloats = 1L << 24;  // 64 MiB

  // params: every parameter whole in the make_param_table(cfg) layout (host), uploaded here.
  // Uses the current CUDA device. Throws UsageError (exit 2) naming the reason when no GPU is
  // usable.
  CudaDecoder(const Config& cfg, const std::vector<float>& params,
              long attention_scratch_floats = kAttentionScratchFloats);
  ~CudaDecoder() override;
  // UsageError naming the reason (no driver, a driver too old, no device) when no GPU is usable.
  static void require_gpu();
  CudaDecoder(const CudaDecoder&) = delete;
  CudaDecoder& operator=(const CudaDecoder&) = delete;

  struct Impl;  // cuda_decoder.cu

 private:
  void forward(const int32_t* tokens, int n) override;

  std::unique_ptr<Impl> impl_;
};

}  // namespace sy
