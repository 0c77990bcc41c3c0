#include "src/bench/train_bench.h"

#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <ostream>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/cpu/gemm.h"
#include "src/bench/train_bench_steps.h"
#include "src/ckpt/compat.h"
#include "src/core/error.h"
#include "src/core/number_text.h"
#include "src/core/scratch_dir.h"
#include "src/core/subprocess.h"
#include "src/data/loader.h"
#include "src/data/tokens.h"
#include "src/model/init.h"
#include "src/model/model.h"
#include "src/model/step_phases.h"
#include "src/optim/optim.h"
#include "src/train/rank_memory.h"

namespace sy {

namespace {

std::string find_torch_script(const std::string& given) {
  namespace fs = std::filesystem;
  if (!given.empty()) return given;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  std::vector<fs::path> candidates;
  if (!ec) candidates.push_back(exe.parent_path().parent_path() / "bench" / "torch_moe.py");
  candidates.push_back(fs::path("bench") / "torch_moe.py");
  for (const auto& c : candidates)
    if (fs::exists(c, ec)) return c.string();
  return {};
}

}  // namespace

namespace bench_detail {

TorchPeer run_torch_peer(const Config& cfg, const TrainBenchOptions& opt, std::ostream& log) {
  namespace fs = std::filesystem;
  TorchPeer p;
  if (opt.python.empty()) {
    p.note = "skipped (--no-torch)";
    return p;
  }
  const std::string py = shell_quote(opt.python);
  // Through run_captured, not std::system: system() ignores SIGINT in this process while the
  // child runs (seconds, for `import torch`), and a Ctrl-C then was lost: the bench ran on.
  if (run_captured(py + " -c 'import torch' >/dev/null 2>&1").exit_code != 0) {
    p.note = "skipped: '" + opt.python + "' cannot import torch (see bench/README.md)";
    return p;
  }
  const std::string script = find_torch_script(opt.torch_script);
  if (script.empty()) {
    p.note = "skipped: bench/torch_moe.py not found (use --torch-script)";
    return p;
  }
  // The resolved config, so both sides read the very same keys.
  std::optional<ScratchDir> dir;
  try {
    dir.emplace("switchyard-bench-");
  } catch (const std::exception& e) {
    p.note = std::string("skipped: ") + e.what();
    return p;
  }
  const std::string yaml = dir->file("config.yaml");
  {
    std::ofstream out(yaml);
    out << to_yaml(cfg);
  }
  log << "running the PyTorch peer: " << script << "\n" << std::flush;
  // Under coreutils' timeout when a limit is set (SIGTERM, then SIGKILL 5 s later): its exit
  // status 124 (137 after the kill) is the limit, not the peer's failure.
  char limit[64] = "";
  if (opt.torch_timeout_s > 0)
    std::snprintf(limit, sizeof limit, "timeout -k 5 %g ", opt.torch_timeout_s);
  const auto started = std::chrono::steady_clock::now();
  const Captured c = run_captured(
      std::string(limit) + py + " " + shell_quote(script) + " bench --config " + shell_quote(yaml) +
      " --steps " + std::to_string(opt.steps) + " --warmup " + std::to_string(opt.warmup) +
      (cfg.device == Device::kCuda ? " --device cuda" : ""));
  dir.reset();
  // 137 is also a peer killed otherwise (out of memory) well before the limit: a timeout only
  // once the limit has passed (review).
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (opt.torch_timeout_s > 0 && (c.exit_code == 124 || c.exit_code == 137) &&
      took >= opt.torch_timeout_s) {
    char note[96];
    std::snprintf(note, sizeof note, "timed out after %g s (--torch-timeout)", opt.torch_timeout_s);
    p.note = note;
    return p;
  }
  if (c.exit_code != 0) {
    p.note = "failed: exit code " + std::to_string(c.exit_code);
    return p;
  }
  // The last non-empty line is the JSON result.
  const auto end = c.output.find_last_not_of('\n');
  const auto start = end == std::string::npos ? 0 : c.output.rfind('\n', end);
  const std::string last = c.output.substr(start == std::string::npos ? 0 : start + 1);
  try {
    const auto j = nlohmann::json::parse(last);
    p.tokens_per_s = j.at("tokens_per_s").get<double>();
    p.step_s = j.at("step_s").get<double>();
    p.peak_mem_bytes = j.value("peak_mem_bytes", 0.0);
    // A ratio of figures that are not positive read "inf x" or "-6652.61 x" (QA).
    if (!(p.tokens_per_s > 0 && std::isfinite(p.tokens_per_s) && p.step_s > 0 &&
          std::isfinite(p.step_s))) {
      p.note = "failed: its tokens_per_s " + number_text(p.tokens_per_s) + " and step_s " +
               number_text(p.step_s) + " are not both positive";
      return p;
    }
    p.note = "torch " + j.value("torch", std::string("?")) + ", " +
             (cfg.device == Device::kCuda ? j.value("device", std::string("cuda")) + ", " +
                                                j.value("precision", std::string("?"))
                                          : std::to_string(j.value("threads", 0)) + " threads");
    p.ran = true;
  } catch (const std::exception& e) {
    p.note = std::string("failed: unreadable output (") + e.what() + ")";
  }
  return p;
}

}  // namespace bench_detail

TrainBenchResult run_train_bench(const Config& cfg, const TrainBenchOptions& opt,
                                 std::ostream& log) {
  if (opt.steps < 1)
    throw UsageError("--steps: got " + std::to_string(opt.steps) + ", expected >= 1");
  if (opt.warmup < 0)
    throw UsageError("--warmup: got " + std::to_string(opt.warmup) + ", expected >= 0");
  const std::string unused = unused_parallel_keys(cfg);
  if (!unused.empty())
    log << "note: bench train times one rank, so " << unused
        << " is not used (`switchyard plan` predicts a layout's step, `switchyard bench a2a` "
           "times its exchange)\n";
  TrainBenchResult r;
  r.flops = step_flops(cfg);
  // The bench runs the model as one rank whatever parallel.* says: that is what is checked and
  // built (the GPU's checks refused etp, zero1 and a placement it does not use, and priced
  // tp = 2 on one rank as "-nan MiB").
  Config one_rank = cfg;
  one_rank.parallel = ParallelConfig{};
  if (cfg.device == Device::kCuda) {
    bench_detail::run_gpu_train_bench(one_rank, opt, r, log);
  } else {
    // As the trainer: a config this host cannot hold is exit 2 naming the largest term, before
    // anything is allocated (not an allocation that runs the machine out of memory).
    if (const std::string w =
            check_memory_fits(one_rank, 1, host_memory_budget(int64_t{1}), MemorySide::kCpuRank);
        !w.empty())
      log << "warning: " << w << "\n";
    // The tokens stay in the file, as the trainer's (the memory check above counts no copy).
    const TokenSource data =
        open_token_file(cfg.data.path, cfg.model.vocab_size, cfg.model.seq_len, /*scan=*/true);
    Model<float> model(cfg);
    init_params(model.params.data(), model.table(), cfg.run.seed);
    AdamW opt_state(model.table(), cfg.train.weight_decay);
    bench_detail::time_train_steps(
        cfg, data, opt, model,
        [&](int64_t step) {
          const double norm = global_grad_norm(model.grads.data(), model.grads.size());
          opt_state.step(model.params.data(), model.grads.data(), learning_rate(cfg.train, step),
                         clip_factor(norm, cfg.train.grad_clip));
        },
        [] {}, r, log);
    log << "timing cblas_sgemm on the model's shapes\n" << std::flush;
    r.gemms = time_gemms(model_gemm_shapes(cfg), opt.gemm_seconds);
  }
  r.ceiling_gflops = best_gflops(r.gemms);
  r.gemm_only_gflops = weighted_gflops(r.gemms);
  // switchyard's figures before the peer runs: a peer killed by a time limit does not take them.
  char line[200];
  std::snprintf(line, sizeof line, "switchyard measured: %.0f tokens/s, %.1f ms per step",
                r.tokens_per_s, r.step_s * 1e3);
  log << line;
  if (r.mfu > 0) {
    std::snprintf(line, sizeof line, ", MFU %.1f %%", r.mfu * 100);
    log << line;
  }
  log << "\n" << std::flush;
  r.torch = bench_detail::run_torch_peer(cfg, opt, log);
  return r;
}

std::string unused_parallel_keys(const Config& cfg) {
  // The config against itself with parallel.* at the defaults: the keys that differ are those.
  Config one_rank = cfg;
  one_rank.parallel = ParallelConfig{};
  std::string out;
  for (const ckpt::ConfigChange& c : ckpt::changed_keys(to_yaml(one_rank), to_yaml(cfg)))
    out += (out.empty() ? "" : ", ") + c.key + "=" + c.new_value;
  return out;
}

GpuPeak gpu_bf16_peak(const std::string& device_name) {
  // NVIDIA's datasheets list bf16 tensor throughput "with sparsity" (2:4); the dense rate MFU
  // uses is half of it. Matched on the name nvidia-smi and cudaGetDeviceProperties report.
  struct Known {
    const char* name;  // exact device name
    double sparse_tflops;
    const char* part;
  };
  static constexpr Known kKnown[] = {
      {"NVIDIA H200", 1979, "NVIDIA H200 SXM"},
      {"NVIDIA H100 80GB HBM3", 1979, "NVIDIA H100 SXM"},
  };
  for (const Known& k : kKnown)
    if (device_name == k.name) {
      GpuPeak p;
      p.flops = k.sparse_tflops / 2 * 1e12;
      char buf[160];
      std::snprintf(buf, sizeof buf,
                    "%s datasheet: %.0f TFLOP/s bf16 tensor with sparsity / 2 = %.1f dense", k.part,
                    k.sparse_tflops, k.sparse_tflops / 2);
      p.source = buf;
      return p;
    }
  return {};
}

double model_flops_utilization(double flops_per_step, double step_s, double peak_flops) {
  if (peak_flops <= 0 || step_s <= 0) return 0.0;
  return flops_per_step / step_s / peak_flops;
}

namespace {

// Where a GPU step goes, largest part first, with each part's share of their sum.
void print_step_phases(const TrainBenchResult& r, std::ostream& out) {
  std::vector<size_t> order(r.phase_s.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return r.phase_s[a] > r.phase_s[b]; });
  double sum = 0;
  for (double s : r.phase_s) sum += s;
  out << "\n# where a GPU step goes: CUDA events on the model's stream, per step over "
      << r.phase_steps << " steps after the timed ones (src/model/step_phases.h)\n";
  char buf[160];
  std::snprintf(buf, sizeof buf, "%-28s %10s %8s\n", "part", "ms", "share");
  out << buf;
  for (size_t i : order) {
    std::snprintf(buf, sizeof buf, "%-28s %10.2f %7.1f%%\n",
                  i < kStepPhaseNames.size() ? kStepPhaseNames[i] : "?", r.phase_s[i] * 1e3,
                  sum > 0 ? 100.0 * r.phase_s[i] / sum : 0.0);
    out << buf;
  }
  std::snprintf(buf, sizeof buf, "%-28s %10.2f %7.1f%%\n", "all parts", sum * 1e3, 100.0);
  out << buf;
}

}  // namespace

void print_train_bench(const Config& cfg, const TrainBenchOptions& opt, const TrainBenchResult& r,
                       std::ostream& out) {
  const bool gpu = cfg.device == Device::kCuda;
  char buf[512];
  out << "\n# switchyard bench train: " << cfg.run.name << ", 1 rank, " << opt.steps
      << " timed steps after " << opt.warmup << " warm-up, ";
  if (gpu) {
    out << to_string(cfg.train.precision) << " on 1 GPU (" << r.device << ")\n"
        << "# MFU peak: "
        << (r.peak.flops > 0 ? r.peak.source : "unknown for this GPU (give --peak-tflops)") << "\n";
  } else {
    const char* coretype = std::getenv("OPENBLAS_CORETYPE");
    out << "fp32 CPU\n"
        << "# " << omp_get_max_threads()
        << " OpenMP threads (gemm() cuts each product into parts by its shape, one "
           "single-threaded OpenBLAS call each, run on them); "
        << cpu::blas_description() << " (OPENBLAS_CORETYPE=" << (coretype ? coretype : "unset")
        << ")"
        << "\n";
  }
  out << "# model FLOPs/step = " << flops_formula(cfg) << "\n\n";

  auto text_row = [&](const char* name, const char* val) {
    std::snprintf(buf, sizeof buf, "%-28s %14s\n", name, val);
    out << buf;
  };
  auto row = [&](const char* name, const char* fmt, double v) {
    char val[64];
    std::snprintf(val, sizeof val, fmt, v);
    text_row(name, val);
  };
  text_row("metric", "value");
  constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
  const double tokens = static_cast<double>(cfg.train.global_batch * cfg.model.seq_len);
  row("tokens/step", "%.0f", tokens);
  row("model GFLOP/step", "%.3f", r.flops.total() * 1e-9);
  row("step time, median (ms)", "%.1f", r.step_s * 1e3);
  row("  forward (ms)", "%.1f", r.forward_s * 1e3);
  row("  backward (ms)", "%.1f", r.backward_s * 1e3);
  row("  optimizer (ms)", "%.1f", r.optimizer_s * 1e3);
  row("tokens/s", "%.0f", r.tokens_per_s);
  row("achieved GFLOP/s", "%.1f", r.gflops);
  if (gpu) {
    if (r.peak.flops > 0)
      row("MFU (dense bf16 peak)", "%.1f %%", 100.0 * r.mfu);
    else
      text_row("MFU (dense bf16 peak)", "n/a");
    row("peak GPU memory (GiB)", "%.2f", r.peak_mem_bytes / kGiB);
    row("  this run's (GiB)", "%.2f", r.model_mem_bytes / kGiB);
    row("  GPU total (GiB)", "%.2f", r.device_mem_bytes / kGiB);
  }
  row("GEMM ceiling GFLOP/s", "%.1f", r.ceiling_gflops);
  row("achieved / ceiling", "%.1f %%", 100.0 * r.gflops / r.ceiling_gflops);
  row("GEMM-only step GFLOP/s", "%.1f", r.gemm_only_gflops);
  row("loss first -> last step", "%.4f", r.first_loss);
  row("", "-> %.4f", r.last_loss);
  if (r.torch.ran) {
    row("PyTorch tokens/s", "%.0f", r.torch.tokens_per_s);
    if (gpu) row("PyTorch peak GPU mem (GiB)", "%.2f", r.torch.peak_mem_bytes / kGiB);
    row("switchyard / PyTorch", "%.2f x", r.tokens_per_s / r.torch.tokens_per_s);
    // The most this BLAS allows: a step that did nothing but its products at the table's rates.
    row("  GEMM-only step / PyTorch", "%.2f x",
        r.tokens_per_s * (r.gemm_only_gflops / r.gflops) / r.torch.tokens_per_s);
  }
  out << "PyTorch peer: " << r.torch.note << "\n";
  if (!r.phase_s.empty()) print_step_phases(r, out);

  if (gpu) {
    out << "\n# GEMM ceiling: cuBLAS (kernels/cuda/gemm.h, " << to_string(cfg.train.precision)
        << " operands, fp32 accumulation) on the shapes one micro-batch multiplies, median of "
           "timed batches of calls\n";
    std::snprintf(buf, sizeof buf, "%-18s %6s %6s %6s %3s %6s %10s\n", "product", "M", "N", "K",
                  "op", "calls", "GFLOP/s");
  } else {
    const int P = r.gemms.empty() ? 1 : r.gemms.front().threads;
    out << "\n# GEMM ceiling: cblas_sgemm on the shapes one micro-batch multiplies (median of "
           "repeated"
           " calls), GFLOP/s with OpenBLAS's "
        << P << " threads in one call, and with " << P
        << " single-threaded calls at once (one per core)\n";
    std::snprintf(buf, sizeof buf, "%-18s %6s %6s %6s %3s %6s %10s %10s\n", "product", "M", "N",
                  "K", "op", "calls", "threaded", "per-core");
  }
  out << buf;
  for (const auto& g : r.gemms) {
    const std::string op = std::string(g.shape.trans_a ? "T" : "N") + (g.shape.trans_b ? "T" : "N");
    if (gpu)
      std::snprintf(buf, sizeof buf, "%-18s %6d %6d %6d %3s %6d %10.1f\n", g.shape.what.c_str(),
                    g.shape.M, g.shape.N, g.shape.K, op.c_str(), g.shape.calls, g.gflops());
    else
      std::snprintf(buf, sizeof buf, "%-18s %6d %6d %6d %3s %6d %10.1f %10.1f\n",
                    g.shape.what.c_str(), g.shape.M, g.shape.N, g.shape.K, op.c_str(),
                    g.shape.calls, g.threaded_gflops(), g.per_core_gflops());
    out << buf;
  }
  out << "ceiling = the best rate in this table; GEMM-only step = sum(calls*flops) / "
         "sum(calls*time at the "
      << (gpu ? "rate" : "better rate") << " of each row)\n";
}

}  // namespace sy
