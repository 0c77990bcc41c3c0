// The timed loop of `switchyard bench train` (train_bench.h), shared by the CPU model and the GPU
// one: W untimed then N timed optimizer steps of the trainer's step (SPEC 3) on real batches of
// the config's token file in the trainer's order, each split into its forward, backward and
// optimizer parts.
//
// The model M is Model<float> or CudaModel: zero_grads(), forward(tokens [MB, T+1] on the host,
// MB, scale) -> LossParts, backward(). optimize(step) runs the norm, clipping and AdamW;
// settle() is called at the end of each backward and optimizer part and must return only when
// that part's work is done (the GPU synchronises its stream there; the CPU has nothing to wait
// for). forward() returns the loss to the host, so it has settled by itself. extra_steps more
// steps follow the timed ones, untimed, between on_extra(true) and on_extra(false) (the GPU
// marks their parts with CUDA events there).
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "src/bench/train_bench.h"
#include "src/core/error.h"
#include "src/core/progress.h"
#include "src/data/loader.h"
#include "src/data/tokens.h"
#include "src/model/model.h"

namespace sy::bench_detail {

inline double median(std::vector<double> v) {
  SY_CHECK(!v.empty(), "median of nothing");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Runs the steps and fills r's times (medians), tokens/s, GFLOP/s and first/last losses.
template <class M, class Optimize, class Settle>
void time_train_steps(const Config& cfg, const TokenSource& data, const TrainBenchOptions& opt,
                      M& model, Optimize&& optimize, Settle&& settle, TrainBenchResult& r,
                      std::ostream& log, int64_t extra_steps = 0,
                      const std::function<void(bool starting)>& on_extra = {}) {
  using Clock = std::chrono::steady_clock;
  const auto since = [](Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  const int64_t T = cfg.model.seq_len, GB = cfg.train.global_batch, MB = cfg.train.micro_batch;
  BatchLoader loader(data.train.reader(), data.train.size(), T, GB, cfg.run.seed);
  const LossScale scale = global_batch_scale(cfg);
  std::vector<int32_t> tokens(static_cast<size_t>(MB * (T + 1)));
  std::vector<double> step_t, fwd_t, bwd_t, opt_t;
  log << "running " << opt.warmup << " warm-up + " << opt.steps << " timed steps\n" << std::flush;
  const int64_t timed_end = opt.warmup + opt.steps;
  ProgressEta eta(timed_end + extra_steps, opt.progress_every_s);  // a large model's step: seconds
  for (int64_t step = 0; step < timed_end + extra_steps; ++step) {
    if (step > 0)
      if (auto line = eta.update(step, "steps"))
        log << "bench train: " << *line << "\n" << std::flush;
    if (step == timed_end && on_extra) on_extra(true);
    const auto t0 = Clock::now();
    double fwd = 0, bwd = 0;
    model.zero_grads();
    LossParts loss;
    for (int64_t first = 0; first < GB; first += MB) {
      loader.fill(step, first, MB, tokens.data());
      const auto tf = Clock::now();
      loss += model.forward(tokens.data(), static_cast<int>(MB), scale);
      const auto tb = Clock::now();
      model.backward();
      settle();
      fwd += std::chrono::duration<double>(tb - tf).count();
      bwd += since(tb);
    }
    if (!std::isfinite(loss.total()))
      throw NumericalError("non-finite loss at bench step " + std::to_string(step + 1));
    const auto to = Clock::now();
    optimize(step);
    settle();
    const double ot = since(to), st = since(t0);
    if (step < opt.warmup || step >= timed_end) continue;
    if (step == opt.warmup) r.first_loss = loss.total();
    r.last_loss = loss.total();
    step_t.push_back(st);
    fwd_t.push_back(fwd);
    bwd_t.push_back(bwd);
    opt_t.push_back(ot);
  }
  if (extra_steps > 0 && on_extra) on_extra(false);
  r.step_s = median(step_t);
  r.forward_s = median(fwd_t);
  r.backward_s = median(bwd_t);
  r.optimizer_s = median(opt_t);
  r.tokens_per_s = static_cast<double>(GB * T) / r.step_s;
  r.gflops = r.flops.total() / r.step_s * 1e-9;
}

// The device: cuda part (train_bench_gpu.cpp): the GPU trainer's steps, the cuBLAS ceiling, the
// device's name, peak and memory into r. Throws UsageError (exit 2) without the CUDA backend or
// a usable GPU, naming the reason.
void run_gpu_train_bench(const Config& cfg, const TrainBenchOptions& opt, TrainBenchResult& r,
                         std::ostream& log);

// The PyTorch peer (bench/torch_moe.py on the same resolved config, its last stdout line JSON):
// skipped without opt.python, an interpreter that cannot import torch, or the script; under
// opt.torch_timeout_s (> 0) a peer past it is killed and noted "timed out after S s".
TorchPeer run_torch_peer(const Config& cfg, const TrainBenchOptions& opt, std::ostream& log);

}  // namespace sy::bench_detail
