// `switchyard bench train`: model FLOPs, step time, tokens/s and achieved GFLOP/s of a config on
// one rank (the CPU, or one GPU with device: cuda), against the machine's GEMM ceiling and, when
// PyTorch is installed, the same model in PyTorch (the work is src/bench/train_bench.h).
#include <cstdlib>
#include <iostream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "app/commands.h"
#include "app/validators.h"
#include "src/bench/train_bench.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/train/signals.h"

namespace sy::app {

void add_bench_train(CLI::App& bench, std::vector<Command>& out) {
  struct Args {
    std::string config;
    std::vector<std::string> overrides;
    TrainBenchOptions opt;
    bool no_torch = false;
  };
  auto a = std::make_shared<Args>();
  if (const char* py = std::getenv("SWITCHYARD_TORCH_PYTHON")) a->opt.python = py;
  auto* cmd = bench.add_subcommand(
      "train",
      "Time training steps of a config on 1 rank: model FLOPs/step, median step time, tokens/s, "
      "achieved GFLOP/s vs the machine's GEMM ceiling on the model's shapes (cblas_sgemm, or "
      "cuBLAS with device: cuda, which adds MFU and peak GPU memory: not yet run on a GPU), and "
      "tokens/s vs the same "
      "model in PyTorch when a Python with torch is found");
  cmd->add_option("-c,--config", a->config, "Experiment config (YAML)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", a->overrides,
                  "Override a config key, e.g. --set train.micro_batch=4 (repeatable)");
  cmd->add_option("--steps", a->opt.steps, "Timed optimizer steps")
      ->capture_default_str()
      ->check(positive_number())
      ->check(signed_64());
  cmd->add_option("--warmup", a->opt.warmup, "Untimed steps first")
      ->capture_default_str()
      ->check(non_negative_number())
      ->check(signed_64());
  cmd->add_option("--python", a->opt.python,
                  "Python interpreter for the PyTorch peer (env SWITCHYARD_TORCH_PYTHON)")
      ->capture_default_str();
  cmd->add_option("--torch-script", a->opt.torch_script,
                  "Path of bench/torch_moe.py (default: found from the binary or the current "
                  "directory)");
  cmd->add_flag("--no-torch", a->no_torch, "Do not run the PyTorch peer");
  cmd->add_option("--torch-timeout", a->opt.torch_timeout_s,
                  "Seconds the PyTorch peer may take before it is killed (0 = no limit); the "
                  "table then says it timed out")
      ->capture_default_str()
      ->check(non_negative_number());
  cmd->add_option("--peak-tflops", a->opt.peak_tflops,
                  "device: cuda: the GPU's dense bf16 peak for MFU, TFLOP/s (default: known for "
                  "H100 SXM and H200 SXM from NVIDIA's datasheets)")
      ->check(positive_number());
  out.push_back({cmd, [a] {
                   // One process: under a launcher every rank ran its own bench, each table
                   // "1 rank", the copies sharing the cores (QA).
                   if (launcher_rank() > 0) return static_cast<int>(kExitOk);  // rank 0 says it
                   if (launcher_size() > 1)
                     throw UsageError(
                         "bench train times one process; run it without mpirun/srun "
                         "(this is one of " +
                         std::to_string(launcher_size()) + " ranks)");
                   if (a->opt.warmup > std::numeric_limits<int64_t>::max() - a->opt.steps)
                     throw UsageError("--warmup " + std::to_string(a->opt.warmup) + " + --steps " +
                                      std::to_string(a->opt.steps) + " is past 2^63 steps");
                   if (!a->no_torch && a->opt.python.empty())  // (was said as --no-torch; QA)
                     throw UsageError(
                         "--python is empty (or SWITCHYARD_TORCH_PYTHON is): name "
                         "an interpreter, or give --no-torch");
                   const Config cfg = load_config(a->config, a->overrides);
                   TrainBenchOptions opt = a->opt;
                   if (a->no_torch) opt.python.clear();
                   const TrainBenchResult r = run_train_bench(cfg, opt, std::cerr);
                   print_train_bench(cfg, opt, r, std::cout);
                   return static_cast<int>(kExitOk);
                 }});
}

}  // namespace sy::app
