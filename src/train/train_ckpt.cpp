#include "src/train/train_ckpt.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>
#include <ostream>
#include <utility>

#include "src/ckpt/compat.h"
#include "src/ckpt/files.h"
#include "src/core/build_id.h"
#include "src/core/durable_file.h"
#include "src/core/error.h"
#include "src/core/run_files.h"
#include "src/optim/optim.h"
#include "src/train/metrics.h"
#include "src/train/signals.h"

namespace sy {

std::vector<ckpt::TensorRef> training_refs(
    const ParamTable& table, float* params, float* m, float* v,
    const std::vector<DistributedOptimizer::MomentRun>* zero1_runs) {
  std::vector<ckpt::TensorRef> out;
  const auto& specs = table.specs();
  // One ref per hyperslab: a placed expert tensor's local experts are several (SlabPart).
  for (const ParamSpec& s : specs)
    for (const SlabPart& p : s.parts)
      out.push_back({s.name, s.shape, p.slab, s.writer, params + s.offset + p.local_offset});
  for (const auto& [moment, buf] : {std::pair{"m", m}, std::pair{"v", v}})
    for (const ParamSpec& s : specs)
      for (const SlabPart& p : s.parts) {
        const std::string path = ckpt::moment_path(moment, s.name);
        const size_t begin = s.offset + p.local_offset, end = begin + p.slab.numel();
        if (!zero1_runs) {
          out.push_back({path, s.shape, p.slab, s.writer, buf + begin});
          continue;
        }
        // The part's elements in each chunk this rank holds, as hyperslabs of the tensor.
        for (const auto& run : *zero1_runs) {
          const size_t lo = std::max(begin, run.first), hi = std::min(end, run.first + run.n);
          if (lo >= hi) continue;
          float* data = buf + run.at + (lo - run.first);
          for (const Slab& piece :
               p.slab.sub_slabs(static_cast<int64_t>(lo - begin), static_cast<int64_t>(hi - lo))) {
            out.push_back({path, s.shape, piece, s.in_norm, data});
            data += piece.numel();
          }
        }
      }
  return out;
}

ckpt::TrainState training_state(const Config& cfg, int64_t done, int64_t optim_step, double lr,
                                const BatchLoader& loader, const TrainSummary& summary) {
  ckpt::TrainState st;
  st.step = done;
  st.tokens_seen = loader.tokens_before(done);
  st.optim_step = optim_step;
  st.lr = lr;
  st.loader = loader.state(done);
  st.rng = {cfg.run.seed, 0};
  st.best_val_loss = summary.best_val_loss;
  st.last_val_loss = summary.final_val_loss;
  return st;
}

ckpt::SaveResult save_training_checkpoint(const CkptTarget& t, const ckpt::TrainState& state,
                                          const std::vector<ckpt::TensorRef>& refs) {
  ckpt::TrainState st = state;
  st.config_yaml = to_yaml(t.cfg);
  st.layout = t.layout;
  if (t.data) {
    st.tokenizer = t.data->tokenizer;
    st.tokenizer_model = t.data->tokenizer_model;
    st.tokenizer_vocab_size = t.data->vocab_size;
    st.data_fingerprint = t.data->fingerprint;
  }
  ckpt::SaveOptions o;
  o.keep = t.cfg.checkpoint.keep;
  o.watchdog = t.watchdog;
  if (const auto fault = CheckpointFault::from_env()) {
    int rank = 0;
    MPI_CHECK(MPI_Comm_rank(t.comm, &rank));
    o.on_stage = [fault, rank, &t, step = state.step](const std::string& stage) {
      fault->at(rank, stage, t.cfg.checkpoint.dir, step);
    };
  }
  return ckpt::save_checkpoint(t.comm, t.cfg.checkpoint.dir, st, refs, o);
}

namespace {

// A changed schedule (train.steps, lr, min_lr, warmup_steps) can move the next step's learning
// rate far from where the checkpoint's schedule had it: extending a finished run with a larger
// train.steps restarts the cosine from a point above min_lr (the lr jumped with no word). One
// line with both values when they differ by more than 1 %; "" otherwise.
std::string schedule_note(const std::string& checkpoint_yaml, const TrainConfig& now,
                          int64_t next_step) {
  TrainConfig was;
  try {
    was = parse_stored_config(checkpoint_yaml, "the checkpoint's config").train;
  } catch (const UsageError&) {
    return "";
  }
  const double a = learning_rate(was, next_step), b = learning_rate(now, next_step);
  if (std::fabs(b - a) <= 0.01 * std::max(a, b)) return "";
  char line[256];
  std::snprintf(line, sizeof line,
                "note: the learning-rate schedule changed: step %lld trains at lr %.3g where the "
                "checkpoint's schedule had %.3g%s\n",
                static_cast<long long>(next_step + 1), b, a,
                b > a ? " (the cosine decays over the new train.steps from there)" : "");
  return line;
}

}  // namespace

ResumeResult resume_training(const CkptTarget& t, const std::string& resume, std::ostream& log,
                             const std::function<std::vector<ckpt::TensorRef>()>& make_refs) {
  ResumeResult r;
  int rank = 0;
  MPI_CHECK(MPI_Comm_rank(t.comm, &rank));
  if (const auto fault = CheckpointFault::from_env())
    fault->at(rank, "start", t.cfg.checkpoint.dir);
  if (resume.empty()) return r;
  std::vector<ckpt::ConfigChange> changes;
  std::vector<ckpt::TensorRef> refs;
  ckpt::LoadOptions load;
  load.verify_all = false;  // plan_resume has just verified every chunk
  load.watchdog = t.watchdog;
  // A large checkpoint takes minutes to verify and read: say how far (rank 0's log).
  load.progress.say = [&](const std::string& line) { log << line << "\n" << std::flush; };
  // Each candidate that verifies is loaded here; one that cannot be (a tensor the model needs is
  // not in it) is skipped like a damaged one and the next older one tried.
  const ckpt::ResumePlan plan = ckpt::plan_resume(
      t.comm, resume, t.cfg.checkpoint.dir, t.watchdog,
      [&](const std::string& path, const ckpt::TrainState& header) {
        // The model shape must match before any tensor is read (a clear key,
        // not a dataset shape); that is the config's fault, not the file's.
        try {
          changes = ckpt::check_resume_config(path, header.config_yaml, to_yaml(t.cfg));
        } catch (const UsageError& e) {
          throw UsageError(e.what(), /*quiet=*/rank != 0);
        }
        if (refs.empty()) refs = make_refs();
        r.state = ckpt::load_checkpoint(t.comm, path, refs, load);
      },
      load.progress);
  for (const auto& s : plan.skipped)
    log << "warning: skipping checkpoint " << s.file << ": " << s.reason << "\n";
  log << plan.message << "\n";
  if (rank == 0) {
    // What the earlier run in this directory logged: where no checkpoint is found (a run that
    // died before its first one; checkpoints left in another directory were refused before this,
    // refuse_checkpoints_left_behind) it starts again; else the steps logged after the
    // checkpoint are trained again, which is what the stop cost.
    const std::string metrics = metrics_path(t.cfg.run.out_dir);
    const int64_t logged = last_logged_step(metrics);
    const int64_t from = plan.state.step + 1;
    if (plan.path.empty() && logged > 0)
      log << "note: " << metrics << " shows this run at step " << logged << " but checkpoint.dir '"
          << t.cfg.checkpoint.dir
          << "' holds no checkpoint: it starts again at step 0 (those metrics move to "
             "metrics.jsonl.prev)\n";
    if (!plan.path.empty() && logged >= from)
      log << "note: " << metrics << " shows the earlier run at step " << logged << ": step"
          << (logged > from ? "s " + std::to_string(from) + "-" : " ") << logged
          << " after the checkpoint " << (logged > from ? "are" : "is")
          << " trained again (their lines in it are replaced)\n";
  }
  if (plan.path.empty()) return r;
  if (!changes.empty()) {
    log << "resuming with changed settings:\n" << ckpt::describe_changes(changes);
    log << schedule_note(plan.state.config_yaml, t.cfg.train, plan.state.step);
    // The batch order is drawn from run.seed (SPEC 3): the stored position counts sequences of
    // the old order, so the rest of the epoch is another draw.
    for (const auto& c : changes)
      if (c.key == "run.seed")
        log << "note: run.seed changed: the data order is drawn anew from step "
            << plan.state.step + 1
            << ", so some windows of this epoch are trained again and others not at all (the "
               "parameters keep the checkpoint's values)\n";
  }
  if (plan.state.layout != t.layout)
    log << "resuming a " << plan.state.layout << " checkpoint under " << t.layout << "\n";
  // Another build continues the run (an upgrade between jobs): said, as its steps are this one's
  // (a resume repeats the steps bit for bit only under the same build and BLAS kernel, README).
  if (!plan.state.written_by.empty() && plan.state.written_by != build_name())
    log << "note: " << plan.path << " was written by " << plan.state.written_by << "; this is "
        << build_name() << "\n";
  // The token file's tokenizer against the one the checkpoint was trained with (SPEC 8: its
  // root attribute and /tokenizer/model): another one gives the embeddings other ids.
  if (t.data) {
    // A damaged or missing /tokenizer/model (a file another tool wrote) does not stop a resume
    // that does not need it: said, not thrown.
    std::optional<ckpt::StoredTokenizer> had;
    try {
      had = ckpt::read_checkpoint_tokenizer(t.comm, plan.path);
    } catch (const ckpt::CheckpointError& e) {
      log << "warning: the tokenizer of " << plan.path << " cannot be read (" << e.what()
          << "): not compared with the token file's\n";
    }
    if (had && !had->name.empty() &&
        (had->name != t.data->tokenizer || had->model != t.data->tokenizer_model))
      log << "warning: the token file's tokenizer ('" << t.data->tokenizer
          << (t.data->tokenizer_model.empty()
                  ? ""
                  : ", a " + std::to_string(t.data->tokenizer_model.size()) + "-byte model")
          << "') is not the one " << plan.path << " was trained with ('" << had->name
          << (had->model.empty() ? "" : ", a " + std::to_string(had->model.size()) + "-byte model")
          << "'): the same ids are other text now, and the next checkpoints store the new "
             "tokenizer\n";
  }
  // The same data.path may name another file by now (a token file made again): the batches from
  // here on are drawn from other data, and val_loss is measured on another validation split.
  if (t.data && !r.state.data_fingerprint.empty() && !t.data->fingerprint.empty() &&
      r.state.data_fingerprint != t.data->fingerprint)
    log << "warning: the token file '" << t.cfg.data.path << "' (" << t.data->fingerprint
        << ") is not the one " << plan.path << " was trained on (" << r.state.data_fingerprint
        << "): the steps from here on draw other batches, and val_loss (its best included) is "
           "compared across two validation splits\n";
  if (!r.state.sealed)
    log << "note: " << plan.path
        << " was written by another tool to SPEC section 5 (no manifest, no metadata checksum): "
           "read by the schema; only HDF5's own checks cover it\n";
  r.resumed = true;
  r.path = plan.path;
  return r;
}

void refuse_fresh_start_over_checkpoints(const Config& cfg) {
  // The step files there (not `latest`, which may name one that was removed).
  const std::vector<ckpt::files::StepFile> there = ckpt::files::list_step_files(cfg.checkpoint.dir);
  if (there.empty()) return;
  throw UsageError(
      "checkpoint.dir '" + cfg.checkpoint.dir + "' holds " + std::to_string(there.size()) +
      " checkpoint(s) of an earlier run (newest " + there.back().path +
      "), which a run from step 0 would overwrite. Continue it with --resume auto (or --resume " +
      "<file>); to start over, give another checkpoint.dir (or run.out_dir) or remove them");
}

void refuse_checkpoints_left_behind(const Config& cfg) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path earlier = fs::path(cfg.run.out_dir) / "config.yaml";
  if (!fs::is_regular_file(earlier, ec) || !ckpt::resume_candidates(cfg.checkpoint.dir).empty())
    return;
  std::string old_dir;
  try {
    old_dir = YAML::LoadFile(earlier.string())["checkpoint"]["dir"].as<std::string>("");
  } catch (const YAML::Exception&) {
    return;  // not ours to judge: the run overwrites it
  }
  if (old_dir.empty() || old_dir == cfg.checkpoint.dir ||
      fs::equivalent(old_dir, cfg.checkpoint.dir, ec))
    return;
  const std::vector<ckpt::ResumeCandidate> found = ckpt::resume_candidates(old_dir);
  if (found.empty()) return;
  const std::string& newest = found.front().path;
  throw UsageError("--resume auto: checkpoint.dir '" + cfg.checkpoint.dir +
                   "' holds no checkpoint, but the earlier run in run.out_dir '" + cfg.run.out_dir +
                   "' kept its checkpoints in '" + old_dir + "' (newest " + newest +
                   "). Resume from it with --resume " + newest +
                   " (the run then checkpoints into '" + cfg.checkpoint.dir +
                   "'), or move the checkpoints there; to start over, give the run another "
                   "run.out_dir");
}

std::optional<TrainSummary> finished_run(const Config& cfg, const ResumeResult& resumed,
                                         const std::string& resume_log, std::ostream& log) {
  if (!resumed.resumed || resumed.state.step < cfg.train.steps) return std::nullopt;
  // A signal from here on is not "stopped before training" (76): the run is complete (exit 0).
  if (const PreemptionSignals* s = PreemptionSignals::installed()) s->start_up_over();
  log << resume_log << "run '" << cfg.run.name << "' is already complete: " << resumed.path
      << " is at step " << resumed.state.step << " of train.steps = " << cfg.train.steps
      << ". Nothing to do: metrics.jsonl and the checkpoints are left as they are (raise "
         "train.steps to train further)\n"
      << std::flush;
  TrainSummary s;
  s.first_step = s.steps_done = resumed.state.step;
  s.final_loss = std::numeric_limits<double>::quiet_NaN();
  s.final_val_loss = resumed.state.last_val_loss;
  s.best_val_loss = resumed.state.best_val_loss;
  return s;
}

namespace {

// The optimizer's moments where they lie (training_refs): no gathered copy under ZeRO-1.
std::vector<ckpt::TensorRef> context_refs(const CkptContext& c) {
  const auto [m, v] = c.opt.moments();
  const std::vector<DistributedOptimizer::MomentRun> runs = c.opt.moment_runs();
  return training_refs(c.model.table(), c.model.params.data(), m, v,
                       c.opt.zero1() ? &runs : nullptr);
}

}  // namespace

ckpt::SaveResult save_training_checkpoint(const CkptContext& c, const ckpt::TrainState& state) {
  return save_training_checkpoint(CkptTarget{c.cfg, c.comm, c.layout, c.data, c.watchdog}, state,
                                  context_refs(c));
}

ResumeResult resume_training(const CkptContext& c, const std::string& resume, std::ostream& log) {
  ResumeResult r = resume_training(CkptTarget{c.cfg, c.comm, c.layout, c.data, c.watchdog}, resume,
                                   log, [&] { return context_refs(c); });
  if (r.resumed) c.opt.set_step_count(r.state.optim_step);
  return r;
}

CheckpointCadence::CheckpointCadence(const Config& cfg, MPI_Comm comm,
                                     const PreemptionSignals& signals, const ResumeResult& resumed,
                                     SaveFn save, comm::Watchdog* watchdog)
    : cfg_(cfg),
      comm_(comm),
      signals_(signals),
      saved_step_(resumed.resumed ? resumed.state.step : -1),
      save_(std::move(save)),
      watchdog_(watchdog),
      fault_(CheckpointFault::from_env()) {
  if (resumed.resumed) {
    resumed_path_ = resumed.path;
    resumed_step_ = resumed.state.step;
    std::error_code ec;  // a checkpoint of another directory (--resume <file>) is no pointer
    if (std::filesystem::equivalent(std::filesystem::path(resumed.path).parent_path(),
                                    cfg.checkpoint.dir, ec) &&
        std::filesystem::path(resumed.path).filename() ==
            ckpt::checkpoint_file_name(resumed.state.step))
      line_.push_back(resumed.state.step);
  }
  signals_.start_up_over();
}

void CheckpointCadence::save(int64_t done, TrainSummary& summary, std::ostream& log) {
  const auto t0 = std::chrono::steady_clock::now();
  const ckpt::SaveResult r = save_(done);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Written again at the end (a signal in the last step): one file, counted once.
  if (summary.checkpoints_written.empty() || summary.checkpoints_written.back() != r.path)
    summary.checkpoints_written.push_back(r.path);
  saved_step_ = done;
  written_step_ = done;
  if (line_.empty() || line_.back() != done) line_.push_back(done);
  // Its size and what writing it cost: a large model's checkpoint is the step's longest pause.
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(r.path, ec);
  char cost[64];
  std::snprintf(cost, sizeof cost, "%.1f s", seconds);
  log << "checkpoint: " << r.path << " ("
      << (ec ? std::string() : files::mib(static_cast<int64_t>(bytes)) + ", ") << cost << ")\n";
  for (const auto& note : r.notes) log << "  " << note << "\n";
}

void CheckpointCadence::after_step(int64_t done, TrainSummary& summary, std::ostream& log) {
  // The last step's checkpoint waits for at_end, after the final evaluation.
  if (cfg_.checkpoint.every > 0 && done % cfg_.checkpoint.every == 0 && done != cfg_.train.steps)
    save(done, summary, log);
  if (fault_) {
    int rank = 0;
    MPI_CHECK(MPI_Comm_rank(comm_, &rank));
    fault_->at(rank, "stop_check", cfg_.checkpoint.dir, done);
  }
  if (!stop_requested(comm_, signals_, watchdog_)) return;
  if (saved_step_ != done) save(done, summary, log);
  if (done == cfg_.train.steps) {
    // A signal in the last step: the run is done but for its final evaluation, which a requeued
    // run would never make (it finds the run complete). Safe on disk already, it finishes, and
    // at_end writes the checkpoint again with the final val_loss.
    log << "signal (" << (signals_.requested() ? signals_.signal_name() : "on another rank")
        << ") in the last step: checkpoint written; finishing the run (the final evaluation and "
           "its checkpoint)\n"
        << std::flush;
    rewrite_at_end_ = true;
    return;
  }
  log << "preempted (" << (signals_.requested() ? signals_.signal_name() : "signal on another rank")
      << ") after step " << done << ": checkpoint written, exiting with " << kExitPreempted
      << " (a job script may requeue the run; --resume auto continues it)\n"
      << std::flush;
  throw Error(kExitPreempted,
              "preempted after step " + std::to_string(done) + "; resume with --resume auto",
              /*quiet=*/true);
}

std::string CheckpointCadence::before_stopping(int64_t done, TrainSummary& summary,
                                               std::ostream& log) {
  if (saved_step_ != done) save(done, summary, log);
  return summary.checkpoints_written.empty() ? "" : summary.checkpoints_written.back();
}

void CheckpointCadence::numerical_failure(int64_t weights_step, const NumericalError& e) const {
  int rank = 0;
  MPI_CHECK(MPI_Comm_rank(comm_, &rank));
  if (rank != 0) throw e;
  if (written_step_ != weights_step) {
    if (weights_step != resumed_step_ || written_step_ >= 0) throw e;
    throw NumericalError(std::string(e.what()) + "; the weights that gave it are those of " +
                             resumed_path_ +
                             ", which this run resumed from (left in place: this run did not "
                             "write it); continue from an earlier checkpoint with --resume <file>",
                         e.quiet());
  }
  const std::string said = ckpt::files::set_aside(cfg_.checkpoint.dir, weights_step, line_);
  if (said.empty()) throw e;
  throw NumericalError(std::string(e.what()) + "; the checkpoint of step " +
                           std::to_string(weights_step) +
                           " holds the weights that gave it: " + said,
                       e.quiet());
}

void CheckpointCadence::at_end(int64_t done, TrainSummary& summary, std::ostream& log) {
  // Also with checkpoint.every = 0 when the run resumed from a checkpoint (one a signal wrote,
  // say): else `latest` would name that mid-run state, and the finished model be lost.
  if ((cfg_.checkpoint.every > 0 || saved_step_ >= 0) && (saved_step_ != done || rewrite_at_end_))
    save(done, summary, log);
  if (fault_) {
    int rank = 0;
    MPI_CHECK(MPI_Comm_rank(comm_, &rank));
    fault_->at(rank, "end", cfg_.checkpoint.dir);
  }
}

}  // namespace sy
