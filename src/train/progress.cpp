#include "src/train/progress.h"

#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <limits>
#include <string>

#include "src/core/durable_file.h"
#include "src/core/error.h"
#include "src/core/run_files.h"
#include "src/train/coactivation.h"
#include "src/train/eval_sample.h"
#include "src/train/loop_common.h"
#include "src/train/rank_memory.h"

namespace sy {

std::optional<MetricsWriter> open_run_outputs(const Config& cfg, const comm::Comm& world,
                                              comm::Watchdog* wd, bool rank0, bool resumed,
                                              int64_t resume_step, std::ostream& log) {
  namespace fs = std::filesystem;
  std::optional<MetricsWriter> metrics;
  agree_on_usage(world, wd, [&] {
    if (!rank0) return;
    // Written whole or not at all: an unchecked stream left an empty config.yaml on a full disk,
    // which `placement --run` then misread.
    const std::string config = (fs::path(cfg.run.out_dir) / "config.yaml").string();
    const std::string path = metrics_path(cfg.run.out_dir);
    const std::string config_what = "the run's config '" + config + "'";
    std::string what = config_what;
    try {
      fs::create_directories(cfg.run.out_dir);
      const auto write_config = [&] {
        what = config_what;
        files::atomic_write_text(config, to_yaml(cfg));
      };
      if (resumed) {
        // The metrics file first: a resume that refuses it (it cannot be read) leaves the run's
        // config.yaml as it was, not the refused run's.
        what = "the metrics file '" + path + "'";
        metrics.emplace(path, resume_step);
        write_config();
        log << start_samples_file(cfg.run.out_dir, true, resume_step);
      } else {
        // The config first: a fresh run that cannot write it has not yet moved the earlier
        // run's metrics aside (a retry would then have replaced their .prev copy).
        write_config();
        what = "the metrics file '" + path + "'";
        log << keep_earlier_as_prev(path);
        metrics.emplace(path, false);
        log << start_samples_file(cfg.run.out_dir, false, 0);
      }
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      files::throw_output_error(what, e.what());
    }
  });
  return metrics;
}

RunProgress::RunProgress(const Config& cfg, const StepFlops& flops, const ResumeResult& resumed,
                         MetricsWriter* metrics, std::ostream& log)
    : cfg_(cfg), flops_(flops), metrics_(metrics), log_(log) {
  summary_.final_val_loss = summary_.best_val_loss = std::numeric_limits<double>::quiet_NaN();
  summary_.first_step = summary_.steps_done = resumed.resumed ? resumed.state.step : 0;
  if (resumed.resumed) {
    summary_.best_val_loss = resumed.state.best_val_loss;
    summary_.final_val_loss = resumed.state.last_val_loss;
  }
}

void RunProgress::step_done(const StepRecord& rec) {
  step_s_sum_ += rec.step_s;
  summary_.steps_done = rec.step;
  summary_.final_loss = rec.loss.total();
  summary_.step_losses.push_back(rec.loss.total());
  if (!log_due(rec.step)) return;
  const double eta = step_s_sum_ / static_cast<double>(rec.step - summary_.first_step) *
                     static_cast<double>(cfg_.train.steps - rec.step);
  report_step(cfg_, rec, flops_, eta, metrics_, log_);
}

bool RunProgress::log_due(int64_t done) const {
  return done % cfg_.log.every == 0 || done == cfg_.train.steps;
}

bool RunProgress::eval_due(int64_t done) const {
  return cfg_.eval.every > 0 && done % cfg_.eval.every == 0 && done != cfg_.train.steps;
}

void RunProgress::eval_done(int64_t step, double val_loss) {
  summary_.final_val_loss = val_loss;
  if (!(val_loss >= summary_.best_val_loss)) summary_.best_val_loss = val_loss;  // also NaN
  report_eval(step, val_loss, metrics_, log_);
  // Finite weights whose forward pass overflows (an update too large for the model, not for
  // fp32): the run cannot go on, and the checkpoint of this step must not become the last good
  // one (it exited 0, or 3 at the next step with that checkpoint kept). Every rank holds the
  // same sum (evaluate's all-reduce), so every rank throws; rank 0 says it. A checkpoint of this
  // step written before (a stop signal in the last step) is the caller's to set aside
  // (CheckpointCadence::numerical_failure).
  if (!std::isfinite(val_loss))
    throw NumericalError("non-finite validation loss at step " + std::to_string(step) +
                             ": the model's forward pass overflows on the validation windows; no "
                             "checkpoint is written after this evaluation",
                         /*quiet=*/metrics_ == nullptr);
}

namespace {
// A loss as the done line prints it: 4 decimals, or 4 digits and an exponent from 1e6 up (a
// fixed-point 6e38 did not fit its buffer and read as 6e30).
std::string loss_text(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, std::isfinite(x) && std::fabs(x) >= 1e6 ? "%.4g" : "%.4f", x);
  return buf;
}
}  // namespace

void log_done(const TrainSummary& summary, const MetricsWriter* metrics, std::ostream& log) {
  // No step ran (train.steps: 0 only evaluates): no train loss to report.
  const std::string loss =
      summary.steps_done > summary.first_step ? loss_text(summary.final_loss) : "-";
  // A resumed run says how many steps this process trained beside its wall time (the run's
  // total read as this process's, "7 steps in 00:00:07" for 2 steps).
  log << "done: ";
  if (summary.first_step > 0)
    log << "step " << summary.steps_done << " (" << summary.steps_done - summary.first_step
        << " steps in " << format_duration(summary.wall_s) << ", resumed from step "
        << summary.first_step << ")";
  else
    log << summary.steps_done << " steps in " << format_duration(summary.wall_s);
  log << " | final loss " << loss << " | val_loss " << loss_text(summary.final_val_loss)
      << " (best " << loss_text(summary.best_val_loss) << ") | "
      << summary.checkpoints_written.size()
      << " checkpoint(s) written | metrics: " << (metrics ? metrics->path() : std::string("-"))
      << "\n"
      << std::flush;
}

void flush_log_step(CoactivationCounter& coact, const comm::Comm& world, int tp, StepRecord& rec,
                    const std::function<int64_t()>& peak_bytes, RunProgress& progress,
                    CheckpointCadence& ckpts, comm::Watchdog* wd, std::ostream& log) {
  try {
    coact.flush(world, tp, rec.step, wd);
  } catch (const Error& e) {
    rec.peak_mem_bytes = max_over_ranks(world, peak_bytes(), wd);
    try {
      progress.step_done(rec);
    } catch (const std::exception&) {
      // the folder is full: the counts' error below says so
    }
    const std::string saved = ckpts.before_stopping(rec.step, progress.summary(), log);
    throw Error(e.code(),
                std::string(e.what()) + ". Step " + std::to_string(rec.step) + " is in " + saved +
                    ": once run.out_dir can take the file, continue with --resume auto",
                e.quiet());
  }
  rec.peak_mem_bytes = max_over_ranks(world, peak_bytes(), wd);
}

}  // namespace sy
