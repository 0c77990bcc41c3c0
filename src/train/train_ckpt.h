// The trainer's side of checkpoints (issue 5): which tensors a rank contributes (its parameter
// slabs and, gathered from the ZeRO-1 chunks when sharded, its AdamW moments), what state goes
// with them, and resuming — under the same or another parallel layout, since every tensor is
// read back through this rank's own slabs of the global tensors.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "comm/mpi.h"
#include "src/ckpt/checkpoint.h"
#include "src/config/config.h"
#include "src/model/model.h"
#include "src/optim/distributed.h"

namespace sy {

struct CkptContext {
  const Config& cfg;
  MPI_Comm comm;       // every rank of the job
  std::string layout;  // ckpt::layout_string of this run
  Model<float>& model;
  DistributedOptimizer& opt;
};

// Collective. Writes the checkpoint of `state` (its step names the file) and rotates old ones.
ckpt::SaveResult save_training_checkpoint(const CkptContext& c, const ckpt::TrainState& state);

// Collective. `resume` is --resume ("" for a fresh start, "auto", or a file). Loads the chosen
// checkpoint into the model's parameters and the optimizer's moments and step count, and
// returns its state (resumed = false when there is nothing to resume: a fresh start). Refuses
// (UsageError naming the key) a config whose model shape differs from the checkpoint's;
// compatible changes and skipped damaged checkpoints are written to `log`.
struct ResumeResult {
  bool resumed = false;
  ckpt::TrainState state;
  std::string path;
};
ResumeResult resume_training(const CkptContext& c, const std::string& resume, std::ostream& log);

}  // namespace sy
