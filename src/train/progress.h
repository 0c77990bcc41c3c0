// How a run reports its steps, the same for both training loops (trainer.cpp, train_gpu.cpp): its
// output files (config.yaml, metrics.jsonl), the progress and metrics lines, the evaluation
// lines, a log step's co-activation counts and peak memory, and the run's last line.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <ostream>

#include "comm/mpi.h"
#include "comm/watchdog.h"
#include "src/config/config.h"
#include "src/train/flops.h"
#include "src/train/metrics.h"
#include "src/train/report.h"
#include "src/train/train_ckpt.h"
#include "src/train/trainer.h"

namespace sy {

class CoactivationCounter;

// <run.out_dir>/config.yaml and metrics.jsonl on rank 0 (nullopt elsewhere): a new file, or,
// when resuming at resume_step > 0, the old one without the lines of the steps redone.
// Collective (agree_on_usage): a file rank 0 cannot write (a full disk, no permission) ends every
// rank with rank 0's message, where rank 0 alone used to leave while the others waited in their
// next collective. A fresh run's predecessor's metrics.jsonl becomes metrics.jsonl.prev, said in
// `log`.
std::optional<MetricsWriter> open_run_outputs(const Config& cfg, const comm::Comm& world,
                                              comm::Watchdog* wd, bool rank0, bool resumed,
                                              int64_t resume_step, std::ostream& log);

// The bookkeeping of a run's steps, the same for both loops: the summary (first step, losses,
// validation losses), a progress line and metrics line every log.every steps and at the last
// one (with the ETA), and the evaluation lines.
class RunProgress {
 public:
  // metrics: rank 0's writer, null elsewhere. Starts at the resumed checkpoint's step (and its
  // validation losses), or at 0.
  RunProgress(const Config& cfg, const StepFlops& flops, const ResumeResult& resumed,
              MetricsWriter* metrics, std::ostream& log);

  TrainSummary& summary() { return summary_; }
  // Whether step `done` (1-based) is reported (a progress line and a metrics line): every
  // log.every steps and the last. What only the report shows (peak memory, inter-node bytes, the
  // co-activation counts) is gathered over the ranks on these steps only.
  bool log_due(int64_t done) const;
  // Step rec.step (1-based) finished with the global batch's rec.loss.
  void step_done(const StepRecord& rec);
  // Whether a periodic evaluation is due after step `done` (the last one is always evaluated).
  bool eval_due(int64_t done) const;
  // NumericalError (exit 3) when val_loss is not finite: before the step's checkpoint.
  void eval_done(int64_t step, double val_loss);

 private:
  const Config& cfg_;
  const StepFlops& flops_;
  MetricsWriter* metrics_;
  std::ostream& log_;
  TrainSummary summary_;
  double step_s_sum_ = 0.0;
};

// The last line of a run: steps, wall time, losses, checkpoints, where the metrics are.
void log_done(const TrainSummary& summary, const MetricsWriter* metrics, std::ostream& log);

// A log step's collective part before its report (rec, of step `done`): the co-activation counts
// to run.out_dir, then rec.peak_mem_bytes (=) the largest of the ranks' peak_bytes() (a
// high-water mark, read after the counts). A run.out_dir that cannot take the counts (agreed by
// every rank) stops the run, but its steps need not be lost where checkpoint.dir has room: the
// step's metrics line first, where it still fits (the run resumes after this step and would
// never write it), then the checkpoint of the step, then the Error naming both.
void flush_log_step(CoactivationCounter& coact, const comm::Comm& world, int tp, StepRecord& rec,
                    const std::function<int64_t()>& peak_bytes, RunProgress& progress,
                    CheckpointCadence& ckpts, comm::Watchdog* wd, std::ostream& log);

}  // namespace sy
