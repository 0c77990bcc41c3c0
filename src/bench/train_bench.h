// `switchyard bench train` (issue 7): the training step of a config on one rank, measured the way
// MFU figures are: model FLOPs per step (src/train/flops.h), the median step time, tokens/s,
// achieved GFLOP/s, and in the same run the machine's GEMM ceiling on the model's own matrix
// shapes (gemm_ceiling.h: cblas_sgemm on the CPU, cuBLAS in the run's precision on the GPU).
// When a Python with PyTorch is at hand it also runs the same model in plain PyTorch
// (bench/torch_moe.py, on the same device) on the same resolved config and reports the ratio of
// tokens/s, the peer a user would otherwise run.
//
// The step is the trainer's (SPEC 3): every micro-batch's forward and backward into one gradient
// buffer, the global gradient norm, clipping, AdamW. Steps run on real batches of the config's
// token file, in the trainer's batch order; warm-up steps are run and not timed.
//
// With `device: cuda` (issue 14) the step is the GPU trainer's (CudaModel, one GPU, the config's
// train.precision), timed on the host around a stream synchronisation at the end of each part,
// and the table adds MFU (model FLOP/s over the GPU's dense bf16 tensor peak, gpu_bf16_peak) and
// the peak device memory (cudaMemGetInfo sampled after every part of every step).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "src/bench/gemm_ceiling.h"
#include "src/config/config.h"
#include "src/train/flops.h"

namespace sy {

struct TrainBenchOptions {
  int64_t steps = 10;          // timed optimizer steps
  int64_t warmup = 2;          // untimed steps before them
  double gemm_seconds = 0.15;  // time spent timing each GEMM shape
  // The PyTorch peer: the interpreter to try (empty = skip the peer) and the script (empty =
  // bench/torch_moe.py next to the binary's build folder, else under the current directory).
  std::string python = "python3";
  std::string torch_script;
  double torch_timeout_s = 0;  // the peer's time limit (0 = none): past it the peer is killed
  // device: cuda: the dense bf16 peak in TFLOP/s that MFU divides by (0 = gpu_bf16_peak of the
  // device's name).
  double peak_tflops = 0;
  double progress_every_s = 5;  // the least time between two progress lines of the steps
};

// The dense (no 2:4 sparsity) bf16 tensor-core peak of a GPU, from its CUDA device name, and
// where the figure comes from. flops = 0 for a GPU this table does not know (MFU then needs
// --peak-tflops).
struct GpuPeak {
  double flops = 0;    // FLOP/s
  std::string source;  // e.g. "NVIDIA H200 SXM datasheet: 1,979 TFLOP/s bf16 with sparsity / 2"
};
GpuPeak gpu_bf16_peak(const std::string& device_name);

// Model FLOPs utilisation: (model FLOPs per step / step time) / peak FLOP/s; 0 when the peak is
// unknown (<= 0).
double model_flops_utilization(double flops_per_step, double step_s, double peak_flops);

struct TorchPeer {
  bool ran = false;
  std::string note;  // why it did not run, or what ran
  double tokens_per_s = 0;
  double step_s = 0;          // median
  double peak_mem_bytes = 0;  // device: cuda, device-wide (total - free) as ours; 0 otherwise
};

struct TrainBenchResult {
  StepFlops flops;       // per optimizer step
  double step_s = 0;     // median over the timed steps
  double forward_s = 0;  // medians of the step's parts (all micro-batches)
  double backward_s = 0;
  double optimizer_s = 0;                // norm, clipping and AdamW
  double tokens_per_s = 0;               // GB*T / step_s
  double gflops = 0;                     // flops.total() / step_s
  double first_loss = 0, last_loss = 0;  // of the first and last timed steps (sanity)
  std::vector<GemmTiming> gemms;
  double ceiling_gflops = 0;    // best_gflops(gemms)
  double gemm_only_gflops = 0;  // weighted_gflops(gemms)
  TorchPeer torch;
  // device: cuda only.
  std::string device;           // the GPU's name ("" on the CPU)
  GpuPeak peak;                 // MFU's denominator
  double mfu = 0;               // model_flops_utilization(flops, step_s, peak)
  double peak_mem_bytes = 0;    // max over the steps of (total - free) device memory
  double model_mem_bytes = 0;   // of that, what this run allocated (above the free memory
                                // before the model existed)
  double device_mem_bytes = 0;  // the device's total memory
  // Where a step goes (src/model/step_phases.h's parts, seconds per step), from CUDA events on
  // the model's stream over phase_steps extra steps after the timed ones; empty on the CPU.
  std::vector<double> phase_s;
  int64_t phase_steps = 0;
};

// The parallel.* keys `cfg` sets away from their defaults, as "parallel.ep=2, parallel.zero1=true"
// ("" when none): the bench runs one rank, and says it does not use them.
std::string unused_parallel_keys(const Config& cfg);

// Runs the benchmark; progress notes go to `log`. Throws UsageError for a bad token file or
// steps < 1, NumericalError when the loss stops being finite.
TrainBenchResult run_train_bench(const Config& cfg, const TrainBenchOptions& opt,
                                 std::ostream& log);

// The result as tables (what the command prints).
void print_train_bench(const Config& cfg, const TrainBenchOptions& opt, const TrainBenchResult& r,
                       std::ostream& out);

}  // namespace sy
