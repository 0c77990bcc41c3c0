// The whole SPEC model on one GPU (the CUDA backend of `device: cuda`): forward, backward and the
// optimizer step (global-norm clipping + AdamW) with parameters, gradients and AdamW moments in
// device memory, in the SAME flat layout as the CPU Model (ParamTable of src/model/params.h), so
// a checkpoint, the trainer's bookkeeping and the CPU reference all index it the same way.
//
// Precision (train.precision): fp32, or bf16 compute with fp32 master weights -- the master
// parameters, gradients and moments are always fp32; in bf16 mode activations are bf16 and a
// bf16 copy of the parameters (refreshed after every update) feeds the GEMMs; all reductions
// are fp32.
//
// One CUDA stream and one cuBLAS handle per model, owned here (no globals).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "src/config/config.h"
#include "src/model/model.h"
#include "src/model/params.h"

namespace sy {

class CudaModel {
 public:
  // Throws UsageError (exit 2) when no GPU is usable, std::logic_error for an unsupported config.
  explicit CudaModel(const Config& cfg);
  ~CudaModel();
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  const ParamTable& table() const;

  // Parameters (=) SPEC section 2 initialisation on the device: bit-identical to init_params().
  void init_params(uint64_t seed);
  void upload_params(const std::vector<float>& host);  // [table().total_numel()]
  std::vector<float> download_params() const;
  std::vector<float> download_grads() const;

  void zero_grads();
  // Forward of B sequences; tokens [B, T+1] on the host. Returns the weighted loss terms (as
  // Model::forward). stats: null, or receives each layer's routing counts.
  LossParts forward(const int32_t* tokens, int B, const LossScale& s,
                    std::vector<MoeStats>* stats = nullptr);
  // grads (+=) d(weighted loss of the last forward)/d(params).
  void backward();
  // The SPEC 3 update from the accumulated gradients: grad_norm = ||grads||, the clip factor
  // (optim.h's clip_factor), AdamW with the same constants and per-kind weight decay as
  // sy::AdamW. Returns grad_norm (non-finite: nothing is updated and the caller should stop).
  double optimizer_step(double lr, double grad_clip, double weight_decay);
  int64_t step_count() const;

  struct Impl;  // per compute precision (cuda_model.cu)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sy
