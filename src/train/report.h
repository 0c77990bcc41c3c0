// What a training run tells its user (SPEC section 6 and the progress lines): one place that
// turns a finished step into its metrics.jsonl record and its progress line, shared by every
// backend's training loop.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/core/progress.h"  // format_duration
#include "src/model/model.h"
#include "src/train/flops.h"
#include "src/train/metrics.h"

namespace sy {

struct StepRecord {
  int64_t step = 0;  // 1-based: optimizer steps done
  LossParts loss;    // of the global batch
  double lr = 0, grad_norm = 0, step_s = 0;
  double a2a_s = 0;  // time inside the expert all-to-all
  int64_t a2a_internode_bytes = 0, a2a_intranode_bytes = 0;
  // The step's inter-node bytes summed over every rank (the two above are this rank's); -1: the
  // run does not span nodes.
  int64_t internode_bytes = -1;
  int64_t peak_mem_bytes = 0;  // the largest peak memory over the ranks (rank_memory.h); 0: unknown
  const std::vector<int64_t>* selected = nullptr;  // [L*E] assignments per layer and expert
  int64_t dropped = 0;                             // assignments dropped by capacity
};

// selected[L*E] (+=) each layer's per-expert selections of one micro-batch, dropped (+=) its
// capacity drops: the step's routing counts, over its micro-batches.
void add_routing_counts(const std::vector<MoeStats>& per_layer, std::vector<int64_t>& selected,
                        int64_t& dropped);

// Writes the step's metrics line (when `metrics` is non-null) and its progress line to `log`;
// eta_s: the estimated time left.
void report_step(const Config& cfg, const StepRecord& r, const StepFlops& flops, double eta_s,
                 MetricsWriter* metrics, std::ostream& log);

// Writes an evaluation's metrics line and its log line.
void report_eval(int64_t step, double val_loss, MetricsWriter* metrics, std::ostream& log);

}  // namespace sy
