// What the CPU training loop (trainer.cpp) and the GPU one (train_gpu.cpp) share, so that both
// split the work, agree on errors, evaluate, sum a step's numbers and report their parameters
// the same way: a 2-GPU data-parallel run sees exactly the sequences of the 2-rank CPU run.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "comm/alltoall.h"
#include "comm/groups.h"
#include "comm/mpi.h"
#include "comm/watchdog.h"
#include "src/config/config.h"
#include "src/core/error.h"
#include "src/data/loader.h"
#include "src/data/tokens.h"
#include "src/model/model.h"
#include "src/model/params.h"
#include "src/train/flops.h"
#include "src/train/metrics.h"
#include "src/train/report.h"
#include "src/train/signals.h"
#include "src/train/train_ckpt.h"
#include "src/train/trainer.h"

namespace sy {

// Runs `work` on every rank; if it throws UsageError (or another sy::Error: an output on a full
// disk) on any rank, every rank throws. One rank reports: rank 0 when it failed (an error every
// rank meets), else the first failing rank (a rank-local problem: its GPU, its memory, a node's
// copy of a file), naming itself. It throws the error with its code (UsageError: exit 2); every
// other rank throws a quiet Error with kExitOk, so that the reporting rank is the only one that
// exits non-zero and mpirun cannot end the job before its message is out (run_with_mpi in
// app/run_mpi.h). Inputs are checked this way before any other collective, so a bad file ends
// the job with one message and exit 2. `wd` bounds the wait for the other ranks (null:
// unbounded).
template <class F>
void agree_on_usage(const comm::Comm& world, comm::Watchdog* wd, F&& work) {
  std::string err;
  ExitCode code = kExitUsage;
  try {
    std::forward<F>(work)();
  } catch (const Error& e) {
    err = e.what();
    code = e.code();
    if (err.empty()) err = "failed";
  }
  int failed_rank = err.empty() ? world.size() : world.rank();
  {
    comm::WatchdogScope scope(wd, "the other ranks to check the inputs (start-up)");
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &failed_rank, 1, MPI_INT, MPI_MIN, world.get()));
  }
  if (failed_rank == world.size()) return;
  if (world.rank() == failed_rank) {
    std::string msg = failed_rank == 0 ? err : "rank " + std::to_string(failed_rank) + ": " + err;
    if (code == kExitUsage) throw UsageError(msg);
    throw Error(code, msg);
  }
  throw Error(kExitOk, "rank " + std::to_string(failed_rank) + " reports why it cannot start",
              /*quiet=*/true);
}

// Test hook for the failure tests (issue 3): SWITCHYARD_FAULT="<rank>:<step>:throw|exit|hang"
// makes that world rank throw, _exit, or go silent (sleep) at the start of that step.
void maybe_inject_fault(int world_rank, int64_t step);

// Collective, first thing in a run: every rank's resolved config and --resume must be rank 0's
// (a config file or --set that differs between nodes trained from other weights, or crashed in a
// collective of other sizes), paths aside (run.out_dir, checkpoint.dir, data.path,
// parallel.expert_placement: a node may see a file under another path). UsageError from the
// first rank that differs (agree_on_usage), naming the first key that differs and both values.
void check_same_config_everywhere(const Config& cfg, const std::string& resume,
                                  const comm::Comm& world, comm::Watchdog* wd);
// Collective: rank 0's `mine` on every rank, compared with the rank's own; where they differ,
// UsageError (agree_on_usage: the first such rank reports) with differs(root), unless that is ""
// (a difference that does not count). `what` names
// the broadcast for the watchdog. For what each rank reads from its own path (the same-config
// check leaves paths aside): the token file, the placement table, checkpoint.dir.
void check_same_as_rank0(const std::string& mine, const comm::Comm& world, comm::Watchdog* wd,
                         const std::string& what,
                         const std::function<std::string(const std::string& root)>& differs);

// Collective: checkpoint.dir must be one directory every rank sees (each checkpoint is one file
// all ranks write with parallel HDF5): where a rank does not find rank 0's lock file there with
// rank 0's holder line (RunDirs, made by rank 0 first), UsageError naming the key -- a node-local
// or unmounted path trained until its first checkpoint, then hung for parallel.timeout_s.
void check_checkpoint_dir_shared(const Config& cfg, const comm::Comm& world, comm::Watchdog* wd);

// "parallel.ep is '2' here and '1' on rank 0" for the first key (ckpt::changed_keys' order) whose
// value in the YAML text `mine` is not the one in `root`; "" when none differs.
std::string first_config_difference(const std::string& mine, const std::string& root);

// Seconds on the steady clock since t0 (step times, the run's wall time).
inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// This rank's coordinates as the parameter table wants them.
ShardLayout shard_layout(const comm::Layout& l);

// Throws UsageError when train.global_batch `gb` does not split into `dp` data-parallel shards
// of whole micro-batches of `mb`, naming both keys and a micro-batch and a global batch that
// would (the shipped configs fit 2 data-parallel ranks; users try more).
void check_global_batch(int64_t gb, int64_t mb, int64_t dp);

// The node (emulated or real) of each rank of this rank's EP group, in EP rank order: what the
// expert exchanges group their inter-node stage by.
std::vector<int> ep_node_of_rank(const comm::Layout& l);
// `moe.route_groups: nodes` for this layout (SPEC section 1): R = the number of nodes an EP
// group spans. The groups must coincide with the experts each node holds: every EP group puts
// equal, contiguous blocks of its EP ranks on R distinct nodes (UsageError naming the keys
// otherwise). Any other config comes back as it is.
Config resolve_route_groups(const Config& cfg, const comm::Layout& l);
// UsageError when cfg's resolved parallel.a2a is hierarchical (or device: cuda, whose exchange
// always is) but some expert-parallel group puts unequal numbers of its EP ranks on its nodes
// (the hierarchical exchange needs equal ones).
// Checked in the agreed start-up checks: the exchange itself would refuse on those ranks only.
void check_hierarchical_groups(const Config& cfg, const comm::Layout& l);

// One optimizer step's numbers: this rank's share, then (sum_over_dp) the global batch's.
struct StepTotals {
  LossParts loss;
  std::vector<int64_t> selected;  // [L*E] assignments per layer and expert
  int64_t dropped = 0;
};
// This rank's share of every global batch, split as SPEC 3 under SPEC 4 says: data-parallel
// rank r takes sequences [r * GB/dp, (r+1) * GB/dp) of each step's batch (BatchLoader's
// layout-independent order), in micro-batches of train.micro_batch. The same for both backends,
// so a 2-GPU run sees the sequences of a 1-GPU or a 2-rank CPU run.
class BatchShare {
 public:
  // `data` must outlive the share.
  BatchShare(const Config& cfg, const TokenSource& data, const comm::Layout& lay);
  const BatchLoader& loader() const { return loader_; }
  // Continues the batch order and the token count where `resumed`'s checkpoint left them (its
  // consumed sequences; -1, not known: step * train.global_batch). Nothing for a fresh start.
  void resume_at(const ResumeResult& resumed);

  // Forward and backward of step `step`'s share on `model` (Model<float> or CudaModel): its
  // gradients (+=), whose sum over dp is the global batch's gradient. Returns the share's loss
  // terms (weighted for the global batch) and routing counts. `after_forward` (optional) runs
  // after each micro-batch's forward (the co-activation counts read its routing).
  template <class M>
  StepTotals accumulate(M& model, int64_t step, const std::function<void()>& after_forward = {}) {
    StepTotals tot;
    tot.selected.assign(static_cast<size_t>(num_layers_ * num_experts_), 0);
    for (int64_t mb = 0; mb < per_dp_; mb += micro_batch_) {
      loader_.fill(step, first_seq_ + mb, micro_batch_, tokens_.data());
      tot.loss += model.forward(tokens_.data(), static_cast<int>(micro_batch_), scale_, &stats_);
      if (after_forward) after_forward();
      model.backward();
      add_routing_counts(stats_, tot.selected, tot.dropped);
    }
    return tot;
  }

 private:
  BatchLoader loader_;
  LossScale scale_;  // the global batch's: loss = mean over its tokens, aux over its groups
  int64_t num_layers_, num_experts_, micro_batch_, per_dp_, first_seq_;
  std::vector<int32_t> tokens_;  // [micro_batch, T + 1]
  std::vector<MoeStats> stats_;
};

// The preemption flags a run watches: the caller's (TrainOptions::signals), or its own handlers
// for the run's duration.
class RunSignals {
 public:
  explicit RunSignals(const PreemptionSignals* given) : given_(given) {
    if (!given_) own_.emplace();
  }
  const PreemptionSignals& get() const { return given_ ? *given_ : *own_; }

 private:
  const PreemptionSignals* given_;
  std::optional<PreemptionSignals> own_;
};

// Loss and routing counts of the global batch (identical on tp ranks: summed over dp).
void sum_over_dp(StepTotals& tot, const comm::Comm& dp, comm::Watchdog* wd);
// The progress record of a finished step (the all-to-all figures left at 0); points into tot.
StepRecord step_record(int64_t done, const StepTotals& tot, double lr, double grad_norm,
                       double step_s);
// rec's all-to-all figures from the expert exchange's counters of this step (reset_stats() at
// its start): its time and this rank's bytes; where an EP group spans nodes (`spans_nodes`,
// agreed by every rank) and the step is logged, the inter-node bytes of all ranks together (an
// all-reduce over `world`). Both trainers, so that metrics.jsonl has the same keys on each.
void add_exchange_figures(StepRecord& rec, const comm::ExchangeStats& stats, bool spans_nodes,
                          bool log_step, const comm::Comm& world, comm::Watchdog* wd);

// SPEC 9 for an update that overflowed fp32 with a finite loss and gradient (an AdamW v past
// FLT_MAX stops its parameter for good, a huge lr or bias rate makes weights infinite):
// `overflowed`, what this rank's update left not finite, is summed over `world` (each rank
// checked its own part) and a NumericalError (exit 3) names step `done` -- before that step's
// checkpoint, so the last one written stays the last good one. Collective.
void check_update_finite(int64_t overflowed, int64_t done, const comm::Comm& world,
                         comm::Watchdog* wd);

// val_loss (SPEC 3): mean lm_loss over the first `windows` windows of T+1 tokens of the
// validation split, in file order, as micro-batches of train.micro_batch windows (the same on
// every layout: capacity drops within one). Each data-parallel rank takes a contiguous share of
// them; every rank calls forward_lm the same number of times (some with n = 0 sequences), since
// the expert exchange is collective. forward_lm(tokens [n, T+1], n) returns the SUM of the
// per-token lm losses of the n windows.
using ForwardLm = std::function<double(const int32_t* tokens, int n)>;
double evaluate(const TokenSource& data, const Config& cfg, int64_t windows,
                const comm::ProcessGroups& g, comm::Watchdog* wd, const ForwardLm& forward_lm);

// The final parameters as global tensors on world rank 0 (empty elsewhere): every writer rank
// sends its parts (in messages of at most 2^30 floats: a part past INT_MAX elements overflowed
// MPI's count), rank 0 knows every rank's slabs from the layout arithmetic. `table` must be
// make_param_table(cfg, shard_layout(g.layout())) and params its flat buffer. `wd` bounds the
// waits (null: unbounded).
std::map<std::string, std::vector<float>> gather_params(const comm::ProcessGroups& g,
                                                        const Config& cfg, const ParamTable& table,
                                                        const float* params,
                                                        comm::Watchdog* wd = nullptr);

// The same gathered straight into the flat buffer of the one-rank layout (make_param_table(cfg)),
// what a Decoder takes: one copy of the model on rank 0 (empty elsewhere), not two.
std::vector<float> gather_flat_params(const comm::ProcessGroups& g, const Config& cfg,
                                      const ParamTable& table, const float* params,
                                      comm::Watchdog* wd = nullptr);

// The names of parameters whose copies differ between the ranks that hold the same part: every
// rank for replicated parameters, the dp group for tp shards, the edp group for experts.
std::vector<std::string> diverged_replicas(const comm::ProcessGroups& g, const ParamTable& table,
                                           const float* params, comm::Watchdog* wd);

// The validation windows an evaluation uses: eval.sequences, or fewer when the split is short.
int64_t eval_windows(const Config& cfg, const TokenSource& data);

// The run's opening lines on rank 0's log: name, resolved config, data, the layout (who holds
// what), `backend` (lines the backend adds: its transport or device), a short validation split,
// the model's size.
void log_run_header(const Config& cfg, const TokenSource& data, const comm::Layout& lay,
                    const std::string& backend, const ParamTable& table, const StepFlops& flops,
                    std::ostream& log);

}  // namespace sy
