#include "src/plot/run_metrics.h"

#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "src/core/error.h"

namespace sy {

namespace {

// The number at `key`; `fallback` where the line has no such key (an older trainer's); NaN where
// the key holds something else (null -- nlohmann writes NaN as null --, a string), which gnuplot
// leaves out of its line: 0 drew a dip to zero.
double number_or(const nlohmann::json& j, const char* key, double fallback) {
  const auto it = j.find(key);
  if (it == j.end()) return fallback;
  return it->is_number() ? it->get<double>() : std::numeric_limits<double>::quiet_NaN();
}

// Appends p to a series whose steps must increase; a step at or below the last one means the run
// was resumed from an earlier checkpoint, so the older lines from that step on are superseded.
template <class P>
void append_newest(std::vector<P>& series, P p) {
  while (!series.empty() && series.back().step >= p.step) series.pop_back();
  series.push_back(std::move(p));
}

}  // namespace

int RunMetrics::num_layers() const {
  for (const auto& t : train)
    if (!t.expert_load.empty()) return static_cast<int>(t.expert_load.size());
  return 0;
}

int RunMetrics::num_experts() const {
  for (const auto& t : train)
    if (!t.expert_load.empty()) return static_cast<int>(t.expert_load.front().size());
  return 0;
}

RunMetrics read_run_metrics(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError(path + ": cannot open (is this a run directory with metrics.jsonl?)");
  RunMetrics m;
  for (std::string line; std::getline(in, line);) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      ++m.skipped_lines;
      continue;
    }
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number()) {
      ++m.skipped_lines;
      continue;
    }
    const auto step = j["step"].get<int64_t>();
    if (j.contains("loss")) {
      TrainPoint p;
      p.step = step;
      p.loss = number_or(j, "loss", 0);
      p.lm_loss = number_or(j, "lm_loss", p.loss);
      p.aux_loss = number_or(j, "aux_loss", 0);
      p.z_loss = number_or(j, "z_loss", 0);
      p.lr = number_or(j, "lr", 0);
      p.grad_norm = number_or(j, "grad_norm", 0);
      p.tokens_per_s = number_or(j, "tokens_per_s", 0);
      p.step_ms = number_or(j, "step_ms", 0);
      p.a2a_ms = number_or(j, "a2a_ms", 0);
      p.dropped_frac = number_or(j, "dropped_frac", 0);
      p.internode_bytes = number_or(j, "internode_bytes", -1);
      if (const auto it = j.find("expert_load"); it != j.end() && it->is_array()) {
        try {
          p.expert_load = it->get<std::vector<std::vector<double>>>();
        } catch (const nlohmann::json::exception&) {
          p.expert_load.clear();  // malformed: plot the rest of the line
        }
      }
      append_newest(m.train, std::move(p));
    } else if (j.contains("val_loss") && j["val_loss"].is_number()) {
      append_newest(m.eval, EvalPoint{step, j["val_loss"].get<double>()});
    }
  }
  if (m.train.empty())
    throw UsageError(path + ": no train lines (lines with \"step\" and \"loss\")");
  return m;
}

}  // namespace sy
