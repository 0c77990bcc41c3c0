#include "src/train/train_ckpt.h"

#include <ostream>
#include <utility>

#include "src/ckpt/compat.h"
#include "src/core/error.h"
#include "src/train/signals.h"

namespace sy {

std::vector<ckpt::TensorRef> training_refs(const ParamTable& table, float* params, float* m,
                                           float* v) {
  std::vector<ckpt::TensorRef> out;
  const auto& specs = table.specs();
  // One ref per hyperslab: a placed expert tensor's local experts are several (SlabPart).
  for (const ParamSpec& s : specs)
    for (const SlabPart& p : s.parts)
      out.push_back({s.name, s.shape, p.slab, s.writer, params + s.offset + p.local_offset});
  for (const auto& [moment, buf] : {std::pair{"m", m}, std::pair{"v", v}})
    for (const ParamSpec& s : specs)
      for (const SlabPart& p : s.parts)
        out.push_back({ckpt::moment_path(moment, s.name), s.shape, p.slab, s.writer,
                       buf + s.offset + p.local_offset});
  return out;
}

ckpt::TrainState training_state(const Config& cfg, int64_t done, int64_t optim_step, double lr,
                                const BatchLoader& loader, const TrainSummary& summary) {
  ckpt::TrainState st;
  st.step = done;
  st.tokens_seen = done * cfg.train.global_batch * cfg.model.seq_len;
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
  }
  ckpt::SaveOptions o;
  o.keep = t.cfg.checkpoint.keep;
  return ckpt::save_checkpoint(t.comm, t.cfg.checkpoint.dir, st, refs, o);
}

ResumeResult resume_training(const CkptTarget& t, const std::string& resume, std::ostream& log,
                             const std::function<std::vector<ckpt::TensorRef>()>& make_refs) {
  ResumeResult r;
  if (resume.empty()) return r;
  const ckpt::ResumePlan plan = ckpt::plan_resume(t.comm, resume, t.cfg.checkpoint.dir);
  for (const auto& s : plan.skipped)
    log << "warning: skipping checkpoint " << s.file << ": " << s.reason << "\n";
  log << plan.message << "\n";
  if (plan.path.empty()) return r;

  // The model shape must match before any tensor is read (a clear key, not a dataset shape).
  const ckpt::TrainState& header = plan.state;
  const auto changes = ckpt::check_resume_config(plan.path, header.config_yaml, to_yaml(t.cfg));
  if (!changes.empty())
    log << "resuming with changed settings:\n" << ckpt::describe_changes(changes);
  if (header.layout != t.layout)
    log << "resuming a " << header.layout << " checkpoint under " << t.layout << "\n";

  ckpt::LoadOptions load;
  load.verify_all = false;  // plan_resume has just verified every chunk
  r.state = ckpt::load_checkpoint(t.comm, plan.path, make_refs(), load);
  r.resumed = true;
  r.path = plan.path;
  return r;
}

ckpt::SaveResult save_training_checkpoint(const CkptContext& c, const ckpt::TrainState& state) {
  std::vector<float> m, v;
  c.opt.gather_moments(m, v);
  return save_training_checkpoint(
      CkptTarget{c.cfg, c.comm, c.layout, c.data}, state,
      training_refs(c.model.table(), c.model.params.data(), m.data(), v.data()));
}

ResumeResult resume_training(const CkptContext& c, const std::string& resume, std::ostream& log) {
  std::vector<float> m, v;
  ResumeResult r = resume_training(CkptTarget{c.cfg, c.comm, c.layout}, resume, log, [&] {
    m.assign(c.model.table().total_numel(), 0.0f);
    v.assign(m.size(), 0.0f);
    return training_refs(c.model.table(), c.model.params.data(), m.data(), v.data());
  });
  if (r.resumed) {
    c.opt.set_moments(m, v);
    c.opt.set_step_count(r.state.optim_step);
  }
  return r;
}

CheckpointCadence::CheckpointCadence(const Config& cfg, MPI_Comm comm,
                                     const PreemptionSignals& signals, int64_t saved_step,
                                     SaveFn save)
    : cfg_(cfg), comm_(comm), signals_(signals), saved_step_(saved_step), save_(std::move(save)) {}

void CheckpointCadence::save(int64_t done, TrainSummary& summary, std::ostream& log) {
  const ckpt::SaveResult r = save_(done);
  summary.checkpoints_written.push_back(r.path);
  saved_step_ = done;
  log << "checkpoint: " << r.path << "\n";
  for (const auto& note : r.notes) log << "  " << note << "\n";
}

void CheckpointCadence::after_step(int64_t done, TrainSummary& summary, std::ostream& log) {
  // The last step's checkpoint waits for at_end, after the final evaluation.
  if (cfg_.checkpoint.every > 0 && done % cfg_.checkpoint.every == 0 && done != cfg_.train.steps)
    save(done, summary, log);
  if (!stop_requested(comm_, signals_)) return;
  if (saved_step_ != done) save(done, summary, log);
  log << "preempted (" << (signals_.requested() ? signals_.signal_name() : "signal on another rank")
      << ") after step " << done << ": checkpoint written, exiting with " << kExitPreempted
      << " so the job script requeues the run\n"
      << std::flush;
  throw Error(kExitPreempted,
              "preempted after step " + std::to_string(done) + "; resume with --resume auto",
              /*quiet=*/true);
}

void CheckpointCadence::at_end(int64_t done, TrainSummary& summary, std::ostream& log) {
  if (cfg_.checkpoint.every > 0 && saved_step_ != done) save(done, summary, log);
}

}  // namespace sy
