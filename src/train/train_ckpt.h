// The trainer's side of checkpoints (issue 5), for both backends: which tensors a rank
// contributes (its parameter slabs and its AdamW moments, as host buffers in its ParamTable's
// flat layout), what state goes with them, when to write one (checkpoint.every, the end of the
// run, a preemption signal), and resuming -- under the same or another parallel layout, since
// every tensor is read back through this rank's own slabs of the global tensors.
//
// The CPU trainer passes its Model and DistributedOptimizer (CkptContext); the GPU trainer
// downloads its device buffers to host vectors and uses the same functions underneath, so a file
// written by one backend resumes on the other.
#pragma once

#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "comm/mpi.h"
#include "src/ckpt/checkpoint.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/data/loader.h"
#include "src/data/tokens.h"
#include "src/model/model.h"
#include "src/optim/distributed.h"
#include "src/train/faults.h"
#include "src/train/trainer.h"

namespace sy {

class PreemptionSignals;
namespace comm {
class Watchdog;
}

// Where this run's checkpoints go and how the run is laid out.
struct CkptTarget {
  const Config& cfg;
  MPI_Comm comm;                        // every rank of the job
  std::string layout;                   // ckpt::layout_string of this run
  const TokenFileInfo* data = nullptr;  // its tokenizer goes into the checkpoint (SPEC 8)
  comm::Watchdog* watchdog = nullptr;  // bounds every wait of a save or resume (parallel.timeout_s)
};

// This rank's refs over host buffers in `table`'s flat layout: the parameters under their SPEC
// names, m and v under ckpt::moment_path; slabs and writers from the table. The moments are the
// whole buffers [P] of every replica, or, with `zero1_runs` (DistributedOptimizer::moment_runs
// under ZeRO-1), only this rank's chunks, packed in m and v as those runs say: each chunk is
// written by the rank that holds it (one tp rank of a tp-replicated parameter, ParamSpec::in_norm's
// rule) and read back into it, so the moments are never gathered whole.
std::vector<ckpt::TensorRef> training_refs(
    const ParamTable& table, float* params, float* m, float* v,
    const std::vector<DistributedOptimizer::MomentRun>* zero1_runs = nullptr);

// The scalar state of a checkpoint after `done` steps.
ckpt::TrainState training_state(const Config& cfg, int64_t done, int64_t optim_step, double lr,
                                const BatchLoader& loader, const TrainSummary& summary);

// Collective. Writes the checkpoint of `state` (its step names the file) from `refs` (this
// rank's parts) and rotates old ones.
ckpt::SaveResult save_training_checkpoint(const CkptTarget& t, const ckpt::TrainState& state,
                                          const std::vector<ckpt::TensorRef>& refs);

// Collective. `resume` is --resume ("" for a fresh start, "auto", or a file). Chooses the
// checkpoint, refuses (UsageError naming the key) a config whose model shape differs from it,
// and loads it into the buffers of make_refs()'s refs (called only when there is something to
// load). Returns its state (resumed = false: a fresh start, nothing was loaded). Compatible
// changes and skipped damaged checkpoints are written to `log`. With "auto", a candidate that
// verifies but cannot be loaded (a tensor the model needs is absent) is skipped like a damaged
// one, and the next older one is tried.
struct ResumeResult {
  bool resumed = false;
  ckpt::TrainState state;
  std::string path;
};
ResumeResult resume_training(const CkptTarget& t, const std::string& resume, std::ostream& log,
                             const std::function<std::vector<ckpt::TensorRef>()>& make_refs);

// The CPU trainer's tensors: parameters straight from the model, the moments gathered from (and
// on resume scattered to) the ZeRO-1 chunks when sharded.
struct CkptContext {
  const Config& cfg;
  MPI_Comm comm;       // every rank of the job
  std::string layout;  // ckpt::layout_string of this run
  Model<float>& model;
  DistributedOptimizer& opt;
  const TokenFileInfo* data = nullptr;  // its tokenizer goes into the checkpoint (SPEC 8)
  comm::Watchdog* watchdog = nullptr;   // bounds every wait of a save or resume
};
ckpt::SaveResult save_training_checkpoint(const CkptContext& c, const ckpt::TrainState& state);
// Also sets the optimizer's moments and step count.
ResumeResult resume_training(const CkptContext& c, const std::string& resume, std::ostream& log);

// A run without --resume in a checkpoint.dir that already holds checkpoints would overwrite them
// as it goes (step_20 at once, the rest later): UsageError (exit 2) naming the newest and the
// ways on. Rank 0, before any directory is made.
void refuse_fresh_start_over_checkpoints(const Config& cfg);

// --resume auto where checkpoint.dir holds no checkpoint but run.out_dir's earlier run (its
// config.yaml) kept them in another directory, which still has them (a user who moved
// checkpoint.dir to a roomier disk): UsageError naming both and the --resume that continues,
// before anything of the run is moved or written. Rank 0 (reads the file system).
void refuse_checkpoints_left_behind(const Config& cfg);

// A run resumed from a checkpoint at or past train.steps has nothing left to do: says so on `log`
// (after `resume_log`) and returns the summary of the finished run, without evaluating again or
// touching metrics.jsonl. nullopt: there are steps to train.
std::optional<TrainSummary> finished_run(const Config& cfg, const ResumeResult& resumed,
                                         const std::string& resume_log, std::ostream& log);

// When a training loop checkpoints: every checkpoint.every steps, at the end of the run (when
// checkpoint.every > 0, or the run resumed from a checkpoint; at_end, after the final
// evaluation, so the last checkpoint carries the last val_loss),
// and after the step in which any rank received SIGUSR1/SIGTERM. `save`
// (collective) writes the checkpoint after `done` steps; written ones are logged and listed in
// the summary. Constructed right before the step loop: from then on a signal is honoured at the
// next step boundary (PreemptionSignals::start_up_over).
class CheckpointCadence {
 public:
  using SaveFn = std::function<ckpt::SaveResult(int64_t done)>;
  // resumed: the checkpoint the run resumed from (resumed.resumed false: a fresh start).
  // watchdog bounds the per-step stop check.
  CheckpointCadence(const Config& cfg, MPI_Comm comm, const PreemptionSignals& signals,
                    const ResumeResult& resumed, SaveFn save, comm::Watchdog* watchdog = nullptr);

  // Collective, after every step: the periodic checkpoint; then, when a preemption signal
  // arrived on any rank, a checkpoint of `done` (unless just written) and throws
  // Error(kExitPreempted) -- except after the last step, where the run goes on to its final
  // evaluation and at_end writes the checkpoint again with it.
  void after_step(int64_t done, TrainSummary& summary, std::ostream& log);
  // Collective, at the end: the final checkpoint when checkpoints are on (or the run resumed from
  // one) and it is not written.
  void at_end(int64_t done, TrainSummary& summary, std::ostream& log);
  // Collective, when the run must stop on an agreed failure that is not the model's (a full
  // run.out_dir): the checkpoint of `done` unless written, so that no step is lost. Returns its
  // path ("" when this step's was written already: that one's).
  std::string before_stopping(int64_t done, TrainSummary& summary, std::ostream& log);
  // Throws `e` (every rank: the failure is agreed), after setting its checkpoint aside on rank 0
  // when this run wrote one of step `weights_step`, the weights whose loss (or validation loss)
  // was not finite -- a checkpoint written between evaluations, or by a signal in the last step
  // before the final evaluation: SPEC 9 keeps the last GOOD checkpoint, so `latest` goes back to
  // the run's checkpoint before it (files::set_aside), and the message says so. Where those are
  // the weights the run resumed from (a checkpoint a signal wrote before a requeue), the message
  // names that file, left in place: this run did not write it, and a resume with other settings
  // may fail on a good one. Not collective.
  [[noreturn]] void numerical_failure(int64_t weights_step, const NumericalError& e) const;

 private:
  void save(int64_t done, TrainSummary& summary, std::ostream& log);

  const Config& cfg_;
  MPI_Comm comm_;
  const PreemptionSignals& signals_;
  int64_t saved_step_;
  int64_t written_step_ = -1;  // the newest checkpoint this run wrote (not the one it resumed)
  std::string resumed_path_;   // the checkpoint the run resumed from ("" for a fresh start)
  int64_t resumed_step_ = -1;
  // The steps of the run's checkpoints in checkpoint.dir, oldest first: the one it resumed from
  // (when it is there), then those it wrote. Where `latest` goes back to after a set-aside.
  std::vector<int64_t> line_;
  SaveFn save_;
  comm::Watchdog* watchdog_;
  std::optional<CheckpointFault> fault_;  // test hook (faults.h)
  bool rewrite_at_end_ = false;  // a signal in the last step: its checkpoint lacks the final eval
};

}  // namespace sy
