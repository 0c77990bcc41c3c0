#include "src/train/train_loop.h"

#include <cmath>
#include <sstream>
#include <utility>

#include "src/core/error.h"
#include "src/optim/optim.h"
#include "src/train/eval_sample.h"
#include "src/train/flops.h"
#include "src/train/metrics.h"
#include "src/train/progress.h"
#include "src/train/signals.h"

namespace sy {

namespace {

// " (lm 5.4, aux 0.02, z inf: moe.z_loss_coeff 1e+308?)": the terms of a loss that is not finite
// (its metrics line is never written), and the coefficient to look at.
std::string loss_terms(const LossParts& loss, const Config& cfg) {
  const auto term = [](double x) {  // "nan" whatever its sign bit (a printed "-nan" says nothing)
    std::ostringstream t;
    if (std::isnan(x))
      t << "nan";
    else
      t << x;
    return t.str();
  };
  std::ostringstream os;
  os << " (lm " << term(loss.lm) << ", aux " << term(loss.aux) << ", z " << term(loss.z);
  if (std::isfinite(loss.lm)) {
    const char* sep = ": ";  // "...: moe.aux_loss_coeff 1e+308?, moe.z_loss_coeff 1e+307?"
    if (!std::isfinite(loss.aux)) {
      os << sep << "moe.aux_loss_coeff " << cfg.moe.aux_loss_coeff << "?";
      sep = ", ";
    }
    if (!std::isfinite(loss.z)) os << sep << "moe.z_loss_coeff " << cfg.moe.z_loss_coeff << "?";
  }
  os << ")";
  return os.str();
}

}  // namespace

TrainSummary run_training(const TrainLoopArgs& args, StepBackend& b, std::ostream& log) {
  const Config& cfg = args.cfg;
  const TokenSource& data = args.data;
  const comm::ProcessGroups& g = args.groups;
  const comm::Layout& lay = g.layout();
  comm::Watchdog* wd = args.watchdog;
  const bool rank0 = lay.world_rank == 0;

  BatchShare share(cfg, data, lay);
  std::ostringstream resume_log;
  const ResumeResult resumed = b.resume(args.options.resume, resume_log);
  const int64_t first_step = resumed.resumed ? resumed.state.step : 0;
  share.resume_at(resumed);
  if (auto finished = finished_run(cfg, resumed, resume_log.str(), log))
    return std::move(*finished);

  const int64_t val_windows = eval_windows(cfg, data);
  const StepFlops flops = step_flops(cfg);
  log_run_header(cfg, data, lay, args.backend_lines, b.table(), flops, log);
  log << args.after_header;
  // After the header, whose first line names the build: the outputs' notes follow it.
  std::optional<MetricsWriter> metrics =
      open_run_outputs(cfg, g.world(), wd, rank0, resumed.resumed, first_step, log);
  log << resume_log.str() << std::flush;  // all of it before the first step, in a log file too
  CoactivationCounter coact(args.model_cfg, rank0, lay.coords.tp_rank == 0, g.world().size(),
                            resumed.resumed ? first_step : -1, log);

  RunProgress progress(cfg, flops, resumed, metrics ? &*metrics : nullptr, log);
  TrainSummary& summary = progress.summary();
  double last_lr = resumed.state.lr;
  const RunSignals signals(args.options.signals);
  CheckpointCadence ckpts(
      cfg, g.world().get(), signals.get(), resumed,
      [&](int64_t done) {
        coact.flush_for_checkpoint(g.world(), lay.tp, done, wd);  // the file as of it
        return b.save(training_state(cfg, done, b.optim_step(), last_lr, share.loader(), summary));
      },
      wd);
  // The weights of step `weights_step` gave a loss or gradients that are not finite.
  const auto not_finite = [&](int64_t weights_step, const std::string& what,
                              const std::string& detail = "") {
    ckpts.numerical_failure(weights_step,
                            NumericalError("non-finite " + what + " at step " +
                                               std::to_string(weights_step + 1) + detail,
                                           /*quiet=*/!rank0));
  };

  const EvalSampler sampler(args.model_cfg, data);
  auto run_eval = [&](int64_t step) {
    const double v = evaluate(data, cfg, val_windows, g, wd,
                              [&](const int32_t* tok, int n) { return b.forward_lm(tok, n); });
    try {
      progress.eval_done(step, v);
    } catch (const NumericalError& e) {
      ckpts.numerical_failure(step, e);  // a signal in the last step wrote it before this
    }
    if (sampler.enabled()) sampler.sample(step, g, b.table(), b.host_params(), log, wd);
  };

  StepTotals tot;  // the step's record points into it
  for (int64_t step = first_step; step < cfg.train.steps; ++step) {
    maybe_inject_fault(lay.world_rank, step + 1);
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t done = step + 1;
    const bool log_step = progress.log_due(done);
    b.begin_step();
    coact.begin_step(step, log_step);
    tot = b.accumulate(share, step, coact);
    const std::optional<double> known_norm = b.reduce_gradients(done);
    sum_over_dp(tot, g.dp(), wd);
    if (!std::isfinite(tot.loss.total())) not_finite(step, "loss", loss_terms(tot.loss, cfg));
    if (known_norm && !std::isfinite(*known_norm)) not_finite(step, "gradients");
    const double lr = learning_rate(cfg.train, step);
    const double norm = b.update(lr, known_norm, tot);
    if (!std::isfinite(norm)) not_finite(step, "gradients");  // nothing was updated
    last_lr = lr;
    check_update_finite(b.update_overflow(), done, g.world(), wd);

    StepRecord rec = step_record(done, tot, lr, norm, seconds_since(t0));
    if (const comm::ExchangeStats* stats = b.exchange_stats())
      add_exchange_figures(rec, *stats, args.spans_nodes, log_step, g.world(), wd);
    if (log_step)
      flush_log_step(
          coact, g.world(), lay.tp, rec, [&] { return b.peak_bytes(); }, progress, ckpts, wd, log);
    progress.step_done(rec);
    if (progress.eval_due(done)) run_eval(done);
    ckpts.after_step(done, summary, log);
  }
  run_eval(summary.steps_done);
  ckpts.at_end(summary.steps_done, summary, log);
  if (args.options.gather_params || args.options.check_replicas) {
    const float* params = b.host_params();
    if (args.options.gather_params) summary.final_params = gather_params(g, cfg, b.table(), params);
    if (args.options.check_replicas)
      summary.diverged_replicas = diverged_replicas(g, b.table(), params, wd);
  }

  summary.wall_s = seconds_since(args.started);
  log_done(summary, metrics ? &*metrics : nullptr, log);
  return std::move(summary);
}

}  // namespace sy
