// `switchyard bench moe-layer`: one MoE layer's forward+backward on the GPU against a dense
// cuBLAS ceiling (the work is src/bench/moe_layer_bench.h). Exits 2 with the reason when the
// CUDA backend is not built in or no GPU is usable.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "app/commands.h"
#include "src/bench/moe_layer_bench.h"
#include "src/core/error.h"

namespace sy::app {

void add_bench_moe_layer(CLI::App& bench, std::vector<Command>& out) {
  auto o = std::make_shared<MoeLayerBenchOptions>();
  auto* cmd = bench.add_subcommand(
      "moe-layer",
      "Time one MoE layer forward+backward on the GPU (CUDA backend): achieved TFLOP/s of the "
      "layer and of its grouped expert GEMMs, against the same GEMMs dense in cuBLAS (not yet run "
      "on a GPU)");
  cmd->add_option("--tokens", o->tokens, "Tokens routed through the layer, > 0")
      ->capture_default_str();
  cmd->add_option("--d", o->d, "d_model, > 0")->capture_default_str();
  cmd->add_option("--ffn", o->ffn, "Expert hidden size F, > 0")->capture_default_str();
  cmd->add_option("--experts", o->experts, "Number of experts E, > 0")->capture_default_str();
  cmd->add_option("--top-k", o->top_k, "Experts per token K, in [1, E]")->capture_default_str();
  auto precision = std::make_shared<std::string>("bf16");
  cmd->add_option("--precision", *precision, "Compute precision: fp32 | bf16")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--iters", o->iters, "Timed iterations, >= 1")->capture_default_str();
  cmd->add_option("--warmup", o->warmup, "Untimed iterations first, >= 0")->capture_default_str();
  out.push_back({cmd, [o, precision] {
                   o->precision = *precision == "fp32" ? Precision::kFp32 : Precision::kBf16;
                   const MoeLayerBenchResult r = run_moe_layer_bench(*o);
                   print_moe_layer_bench(*o, r, std::cout);
                   return static_cast<int>(kExitOk);
                 }});
}

}  // namespace sy::app
