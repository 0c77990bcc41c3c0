#include "src/ckpt/checkpoint.h"

namespace sy::ckpt {

namespace {
std::string describe(const std::string& file, const std::string& dataset,
                     const std::string& problem) {
  std::string s = "checkpoint '" + file + "'";
  if (!dataset.empty()) s += ", " + object_label(dataset);
  return s + ": " + problem;
}
}  // namespace

CheckpointError::CheckpointError(std::string file, std::string dataset, const std::string& problem,
                                 bool quiet)
    : UsageError(describe(file, dataset, problem), quiet),
      file_(std::move(file)),
      dataset_(std::move(dataset)),
      problem_(problem) {}

bool Inspection::ok() const {
  if (!metadata_problem.empty()) return false;
  for (const auto& t : tensors)
    if (!t.problem.empty()) return false;
  return true;
}

std::string layout_string(int64_t dp, int64_t tp, int64_t ep, int64_t etp) {
  return "dp=" + std::to_string(dp) + ",tp=" + std::to_string(tp) + ",ep=" + std::to_string(ep) +
         ",etp=" + std::to_string(etp);
}

std::string moment_path(const std::string& moment, const std::string& param_name) {
  SY_CHECK(moment == "m" || moment == "v", "moment '" << moment << "' (expected m or v)");
  constexpr std::string_view prefix = "model/";
  SY_CHECK(param_name.starts_with(prefix), "parameter '" << param_name << "' is not under model/");
  return "optim/" + moment + "/" + param_name.substr(prefix.size());
}

std::vector<TensorRef> whole_table_refs(const ParamTable& table, float* params, float* m, float* v,
                                        bool writer) {
  std::vector<TensorRef> refs;
  for (const auto& s : table.specs())
    refs.push_back({s.name, s.shape, Slab::whole(s.shape), writer, params + s.offset});
  if (m && v) {
    for (const auto& s : table.specs())
      refs.push_back(
          {moment_path("m", s.name), s.shape, Slab::whole(s.shape), writer, m + s.offset});
    for (const auto& s : table.specs())
      refs.push_back(
          {moment_path("v", s.name), s.shape, Slab::whole(s.shape), writer, v + s.offset});
  }
  return refs;
}

}  // namespace sy::ckpt
