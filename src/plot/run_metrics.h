// A run's metrics.jsonl (SPEC section 6) read back for plotting: train lines and eval lines as
// series over the step, with what a real run directory throws at a reader handled here: keys
// added by later versions are ignored, a resumed run's repeated steps keep the newest lines (a
// restart from a checkpoint appends lines for steps that were already logged before the crash),
// eval lines may be missing altogether, and a line cut off by a crash is skipped.
//
// Letters: L layers, E experts, S logged train steps.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sy {

struct TrainPoint {
  int64_t step = 0;
  double loss = 0, lm_loss = 0, aux_loss = 0, z_loss = 0, lr = 0, grad_norm = 0;
  double tokens_per_s = 0, step_ms = 0, a2a_ms = 0, dropped_frac = 0;
  double internode_bytes = -1;  // the step's over all ranks; -1: absent (the run spans one node)
  std::vector<std::vector<double>> expert_load;  // [L][E]; empty when the line has none
};

struct EvalPoint {
  int64_t step = 0;
  double val_loss = 0;
};

struct RunMetrics {
  std::vector<TrainPoint> train;  // [S], strictly increasing steps
  std::vector<EvalPoint> eval;    // strictly increasing steps
  int skipped_lines = 0;          // unparsable lines (e.g. the last one of a crashed run)
  int num_layers() const;         // L of the expert-load matrices (0 when none)
  int num_experts() const;        // E
};

// Reads `path`. Throws UsageError naming the file when it cannot be opened or holds no train
// line. A train line is one with "loss"; an eval line one with "val_loss" (and no "loss").
RunMetrics read_run_metrics(const std::string& path);

}  // namespace sy
