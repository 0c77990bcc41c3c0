// The training loop (SPEC section 3) on one process: micro-batches with gradient accumulation,
// global-norm clipping, AdamW, the aux-loss-free bias update, periodic evaluation, metrics.jsonl
// (SPEC section 6) and a progress line per log step.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

#include "src/config/config.h"

namespace sy {

struct TrainSummary {
  int64_t steps_done = 0;
  double final_loss = 0.0;      // total loss of the last step
  double final_val_loss = 0.0;  // NaN when no evaluation ran
  double best_val_loss = 0.0;   // NaN when no evaluation ran
  double wall_s = 0.0;
};

// Runs cfg.train.steps optimizer steps. Progress goes to `log`. Throws UsageError for bad input
// files, NumericalError when the loss or the gradients stop being finite.
TrainSummary train(const Config& cfg, std::ostream& log);

}  // namespace sy
