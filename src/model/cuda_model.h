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
// One CUDA stream and one cuBLAS handle per model, owned here (no globals). Every op of the model
// is queued on that stream; a data-parallel trainer reduces the gradients on it too (stream(),
// device_grads()), between backward() and optimizer_step().
//
// Data, tensor and expert parallelism (src/train/train_gpu.cpp): each rank's CudaModel holds its
// part of the model as the CPU rank's table lays it out for the same layout
// (make_param_table(cfg, layout); etp = 1), so checkpoint writers and the padding of the groups
// are exactly the CPU trainer's. With tp > 1 (as the CPU Model) attention runs this rank's
// NH/tp heads (column-parallel wqkv, row-parallel wo) and its output and input gradient are
// all-reduced over tp with NCCL; the MoE layers split their tokens and shared experts over tp
// and move tokens through the EP group's comm::GpuExchange (src/model/cuda_moe.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "src/config/config.h"
#include "src/model/model.h"
#include "src/model/params.h"

namespace sy::comm {
class GpuExchange;
class NcclComm;
}  // namespace sy::comm
namespace sy::cuda {
class PhaseTimer;
}  // namespace sy::cuda

namespace sy {

class CudaModel {
 public:
  // Throws UsageError (exit 2) when no GPU is usable, std::logic_error for an unsupported config
  // (a layout with etp > 1, or ep/tp > 1 without their communicators). Uses the current CUDA
  // device (cudaSetDevice first). exchange: the EP group's, null when ep = 1; tp: the tp group's
  // NCCL communicator, null when tp = 1 (neither owned).
  explicit CudaModel(const Config& cfg, const ShardLayout& layout = {},
                     comm::GpuExchange* exchange = nullptr, comm::NcclComm* tp = nullptr);
  ~CudaModel();
  CudaModel(const CudaModel&) = delete;
  CudaModel& operator=(const CudaModel&) = delete;

  const ParamTable& table() const;

  // Parameters (=) SPEC section 2 initialisation on the device: bit-identical to init_params().
  void init_params(uint64_t seed);
  void upload_params(const std::vector<float>& host);  // [table().total_numel()]
  std::vector<float> download_params() const;
  // Into `into` (resized), reusing its memory: the checkpoint's host copy is not doubled.
  void download_params(std::vector<float>& into) const;
  std::vector<float> download_grads() const;
  // The AdamW moments [table().total_numel()] each, for checkpoints (=, host; each vector's
  // memory reused).
  void download_moments(std::vector<float>& m, std::vector<float>& v) const;
  void upload_moments(const std::vector<float>& m, const std::vector<float>& v);

  // The router-bias sign rule of SPEC 3 (update_router_bias) on the device copy of every layer's
  // moe/bias, from the global routing counts selected[L*E]; only the L*E biases cross to the host
  // and back (no other parameter is touched).
  void update_router_biases(const std::vector<int64_t>& selected, double rate);

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
  // total_sq: the squared global norm from this rank's squared sums of the dense group (the
  // parameters it counts: ParamSpec::in_norm) and the expert group (default: their sum, the
  // whole model on one GPU); tensor and expert parallelism add the other tp ranks' dense sums
  // and the other EP ranks' expert sums. The router's tp-partial gradients must have been
  // summed over tp before.
  using TotalSq = std::function<double(double dense_sq, double expert_sq)>;
  double optimizer_step(double lr, double grad_clip, double weight_decay,
                        const TotalSq& total_sq = {});
  // The parameters, AdamW moments and router biases the last optimizer_step() and
  // update_router_biases() left not finite in fp32 (an update that overflowed with a finite loss
  // and gradient: SPEC 9's numerical failure, as sy::AdamW::step counts it). Waits for the device.
  int64_t update_overflow();
  int64_t step_count() const;
  void set_step_count(int64_t n);  // resuming: the AdamW bias corrections continue from n

  // The gradient buffer on the device [table().total_numel()] and the model's stream: a
  // data-parallel reduction queued on this stream after backward() is ordered before
  // optimizer_step() (which waits for the stream before reading the norm).
  float* device_grads();
  cudaStream_t stream() const;

  // Each MoE layer's slots in the last forward, selected and kept (tests; waits for the device).
  std::vector<SlotRouting> slot_routing() const;
  // MoE layer `layer`'s top-k of the last forward's tokens [N*K], as MoeLayer::topk() (a host
  // copy the forward brought back: no wait).
  const std::vector<int32_t>& topk(int layer) const;

  // Marks the parts of every later step (src/model/step_phases.h) on the model's stream, for
  // `bench train`; null (the default) records nothing.
  void set_phase_timer(cuda::PhaseTimer* timer);

  struct Impl;  // per compute precision (cuda_model.cu)

 private:
  std::unique_ptr<Impl> impl_;
};

// dst[table.total_numel()] (device memory) (=) init_params(table, seed) bit for bit: every run of
// init_runs(table) at its GLOBAL offset (a shard of a tp- or ep-split parameter gets the values
// the 1-GPU run has there), zeros in the padding. Synchronous.
void cuda_init_params(float* dst, const ParamTable& table, uint64_t seed, cudaStream_t stream);

}  // namespace sy
