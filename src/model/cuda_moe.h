// One MoE layer on one GPU (SPEC section 1), forward and backward, built from the CUDA kernels:
// the same stages as the CPU MoeLayer (src/model/moe.h) -- route (fused router kernel, aux and z
// losses, dispatch layout), dispatch (gather), experts (grouped GEMMs: one cuBLAS call per
// projection for all experts), combine -- plus the shared experts, and the capacity limit of
// moe.capacity_factor (the micro-batch is the routing group, as on the CPU).
//
// Precision: T (float or bf16) is the storage of activations and of the compute copy of the
// weights; router probabilities, gates and losses are fp32, weight gradients fp32 (+=).
// Letters as moe.h: N tokens, C d_model, E experts, K top-k, F expert hidden, S shared experts,
// A <= N*K kept rows of the expert-sorted buffer.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "kernels/cuda/buffer.h"
#include "kernels/cuda/gemm.h"
#include "src/model/moe.h"

namespace sy {

// Device pointers into the compute copy of the parameters (bias: the fp32 master).
template <class T>
struct CudaMoeWeights {
  const T* router = nullptr;    // [C,E]
  const float* bias = nullptr;  // [E] (may be null = zeros)
  const T* w1 = nullptr;        // [E,C,F]
  const T* w3 = nullptr;        // [E,C,F]
  const T* w2 = nullptr;        // [E,F,C]
  const T* sw1 = nullptr;       // [S,C,F] (null when S == 0)
  const T* sw3 = nullptr;       // [S,C,F]
  const T* sw2 = nullptr;       // [S,F,C]
};

// Device pointers into the fp32 gradient buffer (+=).
struct CudaMoeGrads {
  float* router = nullptr;
  float *w1 = nullptr, *w3 = nullptr, *w2 = nullptr;
  float *sw1 = nullptr, *sw3 = nullptr, *sw2 = nullptr;
};

template <class T>
class CudaMoeLayer {
 public:
  explicit CudaMoeLayer(const MoeDims& dims);

  // out[N,C] (=) MoE(m[N,C]) for B sequences of T_ tokens. Returns the weighted aux and z terms.
  // Waits once for `stream`: the routing counts size the grouped GEMMs on the host.
  MoeLoss forward(T* out, const T* m, int B, int T_, const CudaMoeWeights<T>& w, const LossScale& s,
                  cudaStream_t stream, cublasHandle_t cublas);
  // dm[N,C] (=); weight gradients in g (+=). After the forward of the same micro-batch.
  void backward(T* dm, const CudaMoeGrads& g, const T* dout, const T* m, const CudaMoeWeights<T>& w,
                const LossScale& s, cudaStream_t stream, cublasHandle_t cublas);

  // Rows kept per expert by the last forward, and its routing counts (selected before
  // capacity, kept, dropped) in the CPU's MoeStats form.
  const std::vector<int>& expert_counts() const { return rows_; }
  MoeStats stats() const;
  // Whether the grouped GEMM fell back to one call per expert (a cuBLAS without the grouped
  // type combination; see kernels/cuda/gemm.h).
  bool grouped_fallback() const { return gg_.used_fallback(); }

 private:
  MoeDims d_;
  int N_ = 0, NG_ = 0, A_ = 0;
  std::vector<int> rows_;
  std::vector<int32_t> h_counts_, h_selected_;
  double h_loss_[2] = {0.0, 0.0};
  cuda::GroupedGemm gg_;

  // Routing (fp32 / int32).
  cuda::DeviceBuffer<float> logits_, probs_, lse_, gates_, grp_frac_, loss_scratch_, row_gate_;
  cuda::DeviceBuffer<int32_t> topk_, selected_, counts_, offsets_, row_token_, slot_row_,
      layout_scratch_;
  cuda::DeviceBuffer<double> loss_;
  // Expert activations (T).
  cuda::DeviceBuffer<T> xs_, h1_, h3_, h_, ys_, sh1_, sh3_, sh_;
  // Backward scratch.
  cuda::DeviceBuffer<T> dys_, dxs_, dh1_, dh3_, dlogits_t_;
  cuda::DeviceBuffer<float> dgates_, dprobs_, dlse_, dlogits_;
};

}  // namespace sy
