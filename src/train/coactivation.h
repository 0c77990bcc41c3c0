// Co-activation counting (issue 17): per layer, how often each pair of experts is chosen by the
// same token, counted from the top-k indices the router already produced (no extra routing work:
// K(K-1)/2 increments per token and layer), summed over the ranks at every log step and written
// to <run.out_dir>/coactivation.h5 (format: src/placement/coactivation_file.h). What `switchyard
// placement` partitions and `switchyard plot` draws.
//
// Every rank counts the tokens it routes; the tp ranks of one data-parallel rank route the same
// tokens, so the world's sum is divided by tp. A resumed run continues the counts of the file in
// its out_dir as of the checkpoint it resumes from: each checkpoint's save records them in the
// file (the newest two: the newest may be set aside after a numerical failure), so the steps a
// crash left counted after it are not counted twice. A resume from an older checkpoint than
// those counts the steps after it again (the log says which).
//
// Letters: NL layers, E experts, K top-k, N tokens of a micro-batch.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "comm/mpi.h"
#include "src/config/config.h"
#include "src/model/model.h"
#include "src/placement/coactivation_file.h"

namespace sy {

namespace comm {
class Watchdog;
}

// counts[E*E] (+=) the pairs (and, on the diagonal, the single experts) of n tokens' top-k
// topk[n*K]; negative entries (no expert) are skipped.
void add_coactivation(int64_t* counts, int E, const int32_t* topk, int64_t n, int K);

class CoactivationCounter {
 public:
  // The file is <cfg.run.out_dir>/coactivation.h5; cfg is resolved (moe.route_groups a number:
  // the routing the counts are recorded under). resumed_step >= 0: a resumed run, which
  // continues the file's counts when it matches the model (rank 0 reads it); -1: a fresh start.
  // samples: whether this rank's tokens go into the sample (tp rank 0: the other tp ranks route
  // the same tokens); world_size: the ranks sharing the sample's size limit.
  CoactivationCounter(const Config& cfg, bool rank0, bool samples, int world_size,
                      int64_t resumed_step, std::ostream& log);

  // Before step `step`'s micro-batches: keep_sample = whether the step's top-k become the file's
  // sample (the same on every rank: at a log step).
  void begin_step(int64_t step, bool keep_sample);
  // After a micro-batch's forward: every layer's routing, layer by layer (add_layer: layer
  // `layer`'s top-k topk[n*K] of its n tokens).
  void add(const Model<float>& model);
  void add_layer(int layer, const int32_t* topk, int64_t n);
  // Collective over `world`: sums what every rank counted since the last flush (divided by tp),
  // gathers the sample (when kept), and rank 0 writes the file as of step `done`; at_checkpoint:
  // the file also keeps these counts as the checkpoint's of step `done`.
  void flush(const comm::Comm& world, int tp, int64_t done, comm::Watchdog* wd,
             bool at_checkpoint = false);
  // Collective, before the checkpoint of step `done` is saved: the file as of that step, kept as
  // the checkpoint's counts. A run stopped between log steps resumes from the checkpoint, so the
  // steps since the last log step must be in the file (they were lost, with no word); a run
  // that crashed after later log steps resumes from these counts (its replayed steps were
  // counted twice). After a flush that failed (the run is stopping), nothing: the checkpoint
  // written before the run stops must not fail on the same full run.out_dir.
  void flush_for_checkpoint(const comm::Comm& world, int tp, int64_t done, comm::Watchdog* wd) {
    if (!failed_) flush(world, tp, done, wd, /*at_checkpoint=*/true);
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool rank0_, samples_;
  int64_t max_sample_ = 0;        // tokens this rank may add to a sample
  Coactivation total_;            // rank 0: what the file holds
  std::vector<int64_t> pending_;  // [NL*E*E] counted since the last flush (+ tokens at the end)
  std::vector<std::vector<int32_t>> sample_;  // [NL][S*K] this step's, when kept
  bool keep_sample_ = false;
  int64_t sample_step_ = 0;
  bool failed_ = false;  // a flush could not write the file (agreed by every rank)
  // A resume from a checkpoint older than the file's counts: steps from+1 .. until are counted
  // again, on top of the file's `before` recounted steps.
  struct {
    int64_t from = 0, until = 0, before = 0;
  } recount_;
};

}  // namespace sy
