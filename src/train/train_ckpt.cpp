#include "src/train/train_ckpt.h"

#include <ostream>

#include "src/ckpt/compat.h"
#include "src/core/error.h"

namespace sy {

namespace {

// This rank's refs: parameters straight from the model, moments from m and v (full local
// buffers in the parameter layout).
std::vector<ckpt::TensorRef> refs(Model<float>& model, std::vector<float>& m,
                                  std::vector<float>& v) {
  std::vector<ckpt::TensorRef> out;
  const auto& specs = model.table().specs();
  for (const ParamSpec& s : specs)
    out.push_back({s.name, s.shape, s.slab, s.writer, model.params.data() + s.offset});
  for (const auto& [moment, buf] : {std::pair{"m", &m}, std::pair{"v", &v}})
    for (const ParamSpec& s : specs)
      out.push_back(
          {ckpt::moment_path(moment, s.name), s.shape, s.slab, s.writer, buf->data() + s.offset});
  return out;
}

}  // namespace

ckpt::SaveResult save_training_checkpoint(const CkptContext& c, const ckpt::TrainState& state) {
  std::vector<float> m, v;
  c.opt.gather_moments(m, v);
  ckpt::TrainState st = state;
  st.config_yaml = to_yaml(c.cfg);
  st.layout = c.layout;
  ckpt::SaveOptions o;
  o.keep = c.cfg.checkpoint.keep;
  return ckpt::save_checkpoint(c.comm, c.cfg.checkpoint.dir, st, refs(c.model, m, v), o);
}

ResumeResult resume_training(const CkptContext& c, const std::string& resume, std::ostream& log) {
  ResumeResult r;
  if (resume.empty()) return r;
  const ckpt::ResumePlan plan = ckpt::plan_resume(c.comm, resume, c.cfg.checkpoint.dir);
  for (const auto& s : plan.skipped)
    log << "warning: skipping checkpoint " << s.file << ": " << s.reason << "\n";
  log << plan.message << "\n";
  if (plan.path.empty()) return r;

  // The model shape must match before any tensor is read (a clear key, not a dataset shape).
  const ckpt::TrainState& header = plan.state;
  const auto changes = ckpt::check_resume_config(plan.path, header.config_yaml, to_yaml(c.cfg));
  if (!changes.empty())
    log << "resuming with changed settings:\n" << ckpt::describe_changes(changes);
  if (header.layout != c.layout)
    log << "resuming a " << header.layout << " checkpoint under " << c.layout << "\n";

  std::vector<float> m(c.model.table().total_numel(), 0.0f), v(m.size(), 0.0f);
  ckpt::LoadOptions load;
  load.verify_all = false;  // plan_resume has just verified every chunk
  r.state = ckpt::load_checkpoint(c.comm, plan.path, refs(c.model, m, v), load);
  c.opt.set_moments(m, v);
  c.opt.set_step_count(r.state.optim_step);
  r.resumed = true;
  r.path = plan.path;
  return r;
}

}  // namespace sy
