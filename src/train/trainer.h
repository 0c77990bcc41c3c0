// The training loop (SPEC section 3) over any parallel layout (SPEC section 4): process groups,
// the model's shards, micro-batches with gradient accumulation on each data-parallel rank, the
// gradient reduction and global-norm clipping, AdamW (optionally ZeRO-1), the aux-loss-free bias
// update, periodic evaluation, metrics.jsonl (SPEC section 6) and a progress line per log step
// (rank 0 writes both).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "comm/mpi.h"
#include "src/config/config.h"

namespace sy {

class PreemptionSignals;

struct TrainSummary {
  int64_t steps_done = 0;
  double final_loss = 0.0;      // total loss of the last step
  double final_val_loss = 0.0;  // NaN when no evaluation ran
  double best_val_loss = 0.0;   // NaN when no evaluation ran
  double wall_s = 0.0;
  std::vector<double> step_losses;  // total loss of every step, in order
  // When requested (TrainOptions::gather_params): the final parameters as GLOBAL tensors by SPEC
  // name, assembled on the world's rank 0 (empty elsewhere).
  std::map<std::string, std::vector<float>> final_params;
  // When requested (TrainOptions::check_replicas): the parameters whose copies on different
  // ranks (replicas of a data-parallel or tensor-parallel group) are NOT bitwise identical at the
  // end of the run, as seen from this rank. Empty when every copy agrees.
  std::vector<std::string> diverged_replicas;
  int64_t first_step = 0;  // the step the run started from (> 0 when resumed)
  std::vector<std::string> checkpoints_written;
};

struct TrainOptions {
  bool gather_params = false;   // fill TrainSummary::final_params (tests, tools)
  bool check_replicas = false;  // fill TrainSummary::diverged_replicas
  // --resume: "" (fresh start), "auto" (the newest checkpoint in checkpoint.dir that verifies;
  // none there: a fresh start) or a checkpoint file.
  std::string resume;
  // The preemption signal flags to watch (app/cmd_train.cpp installs them for the whole process,
  // so a signal that arrives after training ends does not kill it); null: train() installs its
  // own for its duration.
  const PreemptionSignals* signals = nullptr;
};

// How `train` may read its config: a FIFO or terminal on its own, a regular file only in a job of
// several ranks (launcher_size()), each of which reads it.
TextSource config_source();

// load_config on every rank of `world` (collective, MPI up): an error every rank meets is rank
// 0's to report, a rank's own (a node-local copy of the file that differs, an MPMD launch with
// other --set flags) that rank's; see agree_on_usage. The wait for the other ranks is not bounded
// (parallel.timeout_s is in the config being read); a rank that died is the launcher's to see.
// `text`: the file's text where this rank read it already (read_config_text; a pipe gives it
// once), else the file is read here.
Config load_config_on_every_rank(const std::string& path, const std::optional<std::string>& text,
                                 const std::vector<std::string>& overrides,
                                 MPI_Comm world = MPI_COMM_WORLD);

// Runs cfg.train.steps optimizer steps on the ranks of `world` (MPI must be initialized; one rank
// is fine). Progress goes to `log` on world rank 0. Collective: every rank of `world` calls it.
// Checkpoints every checkpoint.every steps and at the end (when checkpoint.every > 0), and
// whenever SIGUSR1 or SIGTERM arrived (after finishing the step; then throws Error with
// kExitPreempted). Throws UsageError on the one rank that reports it (agree_on_usage; the others
// throw a quiet Error) for a layout that does not fit the world or the model, a bad input file
// or an unusable checkpoint;
// NumericalError when the loss or the gradients stop being finite (no checkpoint is written
// then); anything else is a failure of this rank, which aborts the job.
TrainSummary train(const Config& cfg, std::ostream& log, MPI_Comm world = MPI_COMM_WORLD,
                   const TrainOptions& options = {});

}  // namespace sy
