// `switchyard bench train` (issue 7): the training step of a config on one rank, measured the way
// MFU figures are: model FLOPs per step (src/train/flops.h), the median step time, tokens/s,
// achieved GFLOP/s, and in the same run the machine's fp32 GEMM ceiling on the model's own
// matrix shapes (gemm_ceiling.h). When a Python with PyTorch is at hand it also runs the same
// model in plain PyTorch (bench/torch_moe.py) on the same resolved config and reports the ratio
// of tokens/s, the peer a user would otherwise run.
//
// The step is the trainer's (SPEC 3): every micro-batch's forward and backward into one gradient
// buffer, the global gradient norm, clipping, AdamW. Steps run on real batches of the config's
// token file, in the trainer's batch order; warm-up steps are run and not timed.
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
};

struct TorchPeer {
  bool ran = false;
  std::string note;  // why it did not run, or what ran
  double tokens_per_s = 0;
  double step_s = 0;  // median
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
};

// Runs the benchmark; progress notes go to `log`. Throws UsageError for a bad token file or
// steps < 1, NumericalError when the loss stops being finite.
TrainBenchResult run_train_bench(const Config& cfg, const TrainBenchOptions& opt,
                                 std::ostream& log);

// The result as tables (what the command prints).
void print_train_bench(const Config& cfg, const TrainBenchOptions& opt, const TrainBenchResult& r,
                       std::ostream& out);

}  // namespace sy
