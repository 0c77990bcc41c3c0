// The training loop of SPEC section 3, once for both backends: resume, the run's header and
// outputs, the steps with their progress lines, evaluations, samples and checkpoints, and the
// end. What a step computes on its device -- the forward and backward passes, the gradient sums
// over the ranks, the AdamW update -- is the backend's (StepBackend): the CPU model with its
// DistributedOptimizer (trainer.cpp), the GPU model with NCCL (train_gpu.cpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "comm/alltoall.h"
#include "comm/groups.h"
#include "comm/watchdog.h"
#include "src/ckpt/checkpoint.h"
#include "src/config/config.h"
#include "src/data/tokens.h"
#include "src/model/params.h"
#include "src/train/coactivation.h"
#include "src/train/loop_common.h"
#include "src/train/train_ckpt.h"
#include "src/train/trainer.h"

namespace sy {

// One backend's part of a run, called by run_training() in this order each step: begin_step,
// accumulate, reduce_gradients, update, update_overflow (not after an update that returned a
// norm that is not finite: the run ends there).
class StepBackend {
 public:
  virtual ~StepBackend() = default;

  // Collective. Loads the checkpoint --resume names (`resume`: "", "auto" or a file) into the
  // model and its optimizer; what resume_training() returns.
  virtual ResumeResult resume(const std::string& resume, std::ostream& log) = 0;

  // Zeroes the gradients and the expert exchange's counters.
  virtual void begin_step() = 0;
  // The forward and backward passes of this rank's share of step `step`'s batch
  // (share.accumulate on the model), the routing of each micro-batch counted in `coact`.
  virtual StepTotals accumulate(BatchShare& share, int64_t step, CoactivationCounter& coact) = 0;
  // Collective. Sums the gradients over the ranks holding the same parameters (the step `done`
  // names the waits). Returns the global gradient norm where it is known before the update,
  // nullopt where update() computes it.
  virtual std::optional<double> reduce_gradients(int64_t done) = 0;
  // AdamW at `lr`, the gradients clipped by train.grad_clip, then the router biases from the
  // global routing counts (moe.bias_update_rate > 0); collective where the norm or the optimizer
  // is. `norm`: what reduce_gradients returned (finite when it is a number). Returns the global
  // gradient norm; not finite: nothing was updated.
  virtual double update(double lr, std::optional<double> norm, const StepTotals& tot) = 0;
  // Values this rank's update of the step left not finite. Waits for the update; the step's work
  // is then done (the GPU samples its memory in use here, for peak_bytes).
  virtual int64_t update_overflow() = 0;
  // This step's expert exchange counters; nullptr without an exchange.
  virtual const comm::ExchangeStats* exchange_stats() const = 0;
  // This rank's peak memory in bytes: the host's RSS high-water mark, or the most GPU memory in
  // use at the end of a step.
  virtual int64_t peak_bytes() = 0;

  // The sum of the per-token lm losses of `n` windows of T+1 tokens (evaluate()'s ForwardLm).
  // Every rank calls it as often as the others, with n = 0 where its share is empty: the model's
  // expert exchange is collective, and such a rank must still take part in it.
  virtual double forward_lm(const int32_t* tokens, int n) = 0;
  // This rank's parameters in table()'s flat layout, on the host (the GPU's copy: valid until the
  // next host_params() or save()).
  virtual const float* host_params() = 0;
  virtual const ParamTable& table() const = 0;
  // AdamW's step count.
  virtual int64_t optim_step() const = 0;
  // Collective. Writes the checkpoint of `state` from the model and its optimizer.
  virtual ckpt::SaveResult save(const ckpt::TrainState& state) = 0;
};

// What a run gives the loop besides its backend.
struct TrainLoopArgs {
  const Config& cfg;  // as given: the header, config.yaml, batches, schedule, cadence, evaluation
  const Config& model_cfg;  // resolved (moe.route_groups a number): the evaluation samples
  const TokenSource& data;
  const comm::ProcessGroups& groups;
  comm::Watchdog* watchdog;
  const TrainOptions& options;
  bool spans_nodes = false;   // some EP group crosses nodes (agreed by every rank)
  std::string backend_lines;  // the header's lines of the backend: its device, GEMM, transport
  std::string after_header;   // lines right after the header (the expert placement)
  std::chrono::steady_clock::time_point started;  // the run's start, for its wall time
};

// Collective over args.groups.world(): the run from its resume to its last line on `log`
// (rank 0's; a discarding stream elsewhere).
TrainSummary run_training(const TrainLoopArgs& args, StepBackend& backend, std::ostream& log);

}  // namespace sy
