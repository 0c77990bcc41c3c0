#include "src/train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <ostream>
#include <vector>

#include "src/core/error.h"
#include "src/data/loader.h"
#include "src/data/tokens.h"
#include "src/model/init.h"
#include "src/model/model.h"
#include "src/optim/optim.h"
#include "src/train/metrics.h"

namespace sy {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string format_duration(double s) {
  const long t = static_cast<long>(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  return buf;
}

// val_loss (SPEC 3): mean lm_loss over the first eval.sequences windows of T+1 tokens of the
// validation split, in file order.
double evaluate(Model<float>& model, const TokenData& data, const Config& cfg, int64_t windows) {
  const int T = static_cast<int>(cfg.model.seq_len);
  const int chunk = static_cast<int>(cfg.train.micro_batch);
  std::vector<int32_t> tokens(static_cast<size_t>(chunk) * (T + 1));
  double sum = 0.0;
  for (int64_t first = 0; first < windows; first += chunk) {
    const int n = static_cast<int>(std::min<int64_t>(chunk, windows - first));
    for (int i = 0; i < n; ++i) {
      const auto* src = data.val.data() + (first + i) * T;
      std::copy(src, src + T + 1, tokens.begin() + static_cast<long>(i) * (T + 1));
    }
    LossScale s;
    s.token_weight = 1.0;  // sum of per-token losses; divided once below
    sum += model.forward(tokens.data(), n, s).lm;
  }
  return sum / static_cast<double>(windows * T);
}

bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

}  // namespace

TrainSummary train(const Config& cfg, std::ostream& log) {
  namespace fs = std::filesystem;
  const auto t_start = Clock::now();
  const int64_t T = cfg.model.seq_len, GB = cfg.train.global_batch, MB = cfg.train.micro_batch;
  const int L = static_cast<int>(cfg.model.n_layers), E = static_cast<int>(cfg.moe.num_experts);
  const int64_t K = cfg.moe.top_k;

  // Inputs first: a bad data file is a usage error before any allocation or output.
  const TokenData data = read_token_file(cfg.data.path, cfg.model.vocab_size, T);
  const int64_t val_windows = std::min<int64_t>(
      cfg.eval.sequences, num_val_windows(static_cast<int64_t>(data.val.size()), T));

  fs::create_directories(cfg.run.out_dir);
  {
    std::ofstream yaml(fs::path(cfg.run.out_dir) / "config.yaml");
    yaml << to_yaml(cfg);
  }
  log << "switchyard: run '" << cfg.run.name << "' -> " << cfg.run.out_dir << "\n"
      << "resolved config:\n"
      << to_yaml(cfg) << "\n"
      << "data: " << cfg.data.path << " (" << data.train.size() << " train / " << data.val.size()
      << " val tokens, tokenizer " << data.tokenizer << ")\n";
  if (val_windows < cfg.eval.sequences)
    log << "warning: eval.sequences = " << cfg.eval.sequences << " but the validation split holds "
        << val_windows << " windows of " << T + 1 << " tokens; evaluating on " << val_windows
        << "\n";

  Model<float> model(cfg);
  init_params(model.params.data(), model.table(), cfg.run.seed);
  AdamW opt(model.table(), cfg.train.weight_decay);
  BatchLoader loader(data.train, T, GB, cfg.run.seed);
  MetricsWriter metrics((fs::path(cfg.run.out_dir) / "metrics.jsonl").string(), false);
  log << "model: " << model.table().total_numel() << " parameters, " << L << " layers, " << E
      << " experts (top-" << K << ")\n";

  // The loss of the global batch is the mean over its tokens; aux is the mean over its groups.
  LossScale scale;
  scale.token_weight = 1.0 / static_cast<double>(GB * T);
  const int64_t groups =
      cfg.moe.aux_loss_scope == AuxScope::kSequence ? GB : GB / MB;  // micro_batch: one per MB
  scale.group_weight = 1.0 / static_cast<double>(groups);

  std::vector<int32_t> tokens(static_cast<size_t>(MB * (T + 1)));
  std::vector<MoeStats> mb_stats;
  std::vector<std::vector<int64_t>> load(L, std::vector<int64_t>(E));  // selected, global batch
  TrainSummary summary;
  summary.final_val_loss = summary.best_val_loss = std::numeric_limits<double>::quiet_NaN();
  double step_s_sum = 0.0;

  auto run_eval = [&](int64_t step) {
    const double v = evaluate(model, data, cfg, val_windows);
    summary.final_val_loss = v;
    if (!(v >= summary.best_val_loss)) summary.best_val_loss = v;  // also replaces NaN
    metrics.write({{"step", step}, {"val_loss", v}});
    char buf[96];
    std::snprintf(buf, sizeof buf, "eval step %lld | val_loss %.4f\n", static_cast<long long>(step),
                  v);
    log << buf << std::flush;
  };

  for (int64_t step = 0; step < cfg.train.steps; ++step) {
    const auto t0 = Clock::now();
    model.zero_grads();
    for (auto& row : load) std::fill(row.begin(), row.end(), 0);
    int64_t dropped = 0;
    LossParts loss;
    for (int64_t first = 0; first < GB; first += MB) {
      loader.fill(step, first, MB, tokens.data());
      loss += model.forward(tokens.data(), static_cast<int>(MB), scale, &mb_stats);
      model.backward();
      for (int l = 0; l < L; ++l) {
        for (int e = 0; e < E; ++e) load[l][e] += mb_stats[l].selected[e];
        dropped += mb_stats[l].dropped;
      }
    }
    if (!std::isfinite(loss.total()) || !all_finite(model.grads))
      throw NumericalError("non-finite " +
                           std::string(std::isfinite(loss.total()) ? "gradients" : "loss") +
                           " at step " + std::to_string(step + 1));

    const double norm = global_grad_norm(model.grads.data(), model.grads.size());
    const double lr = learning_rate(cfg.train, step);
    opt.step(model.params.data(), model.grads.data(), lr, clip_factor(norm, cfg.train.grad_clip));
    if (cfg.moe.bias_update_rate > 0)
      for (int l = 0; l < L; ++l)
        update_router_bias(model.param(layer_param_name(l, "moe/bias")), load[l].data(), E,
                           cfg.moe.bias_update_rate);

    const double step_s = seconds_since(t0);
    step_s_sum += step_s;
    const int64_t done = step + 1;
    summary.steps_done = done;
    summary.final_loss = loss.total();
    if (done % cfg.log.every == 0 || done == cfg.train.steps) {
      const double assignments = static_cast<double>(GB * T * K);
      nlohmann::json expert_load = nlohmann::json::array();
      for (int l = 0; l < L; ++l) {
        std::vector<double> frac(E);
        for (int e = 0; e < E; ++e) frac[e] = static_cast<double>(load[l][e]) / assignments;
        expert_load.push_back(frac);
      }
      const double tok_s = static_cast<double>(GB * T) / step_s;
      metrics.write({{"step", done},
                     {"loss", loss.total()},
                     {"lm_loss", loss.lm},
                     {"aux_loss", loss.aux},
                     {"z_loss", loss.z},
                     {"lr", lr},
                     {"grad_norm", norm},
                     {"tokens_per_s", tok_s},
                     {"step_ms", step_s * 1e3},
                     {"a2a_ms", 0.0},
                     {"dropped_frac", static_cast<double>(dropped) / (assignments * L)},
                     {"expert_load", expert_load}});
      const double eta =
          step_s_sum / static_cast<double>(done) * static_cast<double>(cfg.train.steps - done);
      char buf[256];
      std::snprintf(buf, sizeof buf,
                    "step %6lld/%lld | loss %.4f (lm %.4f aux %.4f z %.4f) | lr %.2e | "
                    "grad %.3f | %.0f tok/s | %.1f ms | ETA %s\n",
                    static_cast<long long>(done), static_cast<long long>(cfg.train.steps),
                    loss.total(), loss.lm, loss.aux, loss.z, lr, norm, tok_s, step_s * 1e3,
                    format_duration(eta).c_str());
      log << buf << std::flush;
    }
    if (cfg.eval.every > 0 && done % cfg.eval.every == 0 && done != cfg.train.steps) run_eval(done);
  }
  run_eval(summary.steps_done);

  summary.wall_s = seconds_since(t_start);
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "done: %lld steps in %s | final loss %.4f | val_loss %.4f (best %.4f) | "
                "metrics: %s\n",
                static_cast<long long>(summary.steps_done), format_duration(summary.wall_s).c_str(),
                summary.final_loss, summary.final_val_loss, summary.best_val_loss,
                metrics.path().c_str());
  log << buf << std::flush;
  return summary;
}

}  // namespace sy
