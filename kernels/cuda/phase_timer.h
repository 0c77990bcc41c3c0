// Stream time by phase, from CUDA events: mark(p) records an event on the stream, and the time
// from one mark to the next belongs to phase p (the GPU's own clock; time the stream spends idle
// counts to the phase marked before it, so callers mark an "idle" phase before waiting for the
// stream on the host). For benchmarks only: a model without a timer records nothing.
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "kernels/cuda/buffer.h"
#include "kernels/cuda/check.h"

namespace sy::cuda {

class PhaseTimer {
 public:
  explicit PhaseTimer(int phases) : seconds_(static_cast<size_t>(phases), 0.0) {}

  // Phase `phase` starts now on `stream` (and the previous mark's phase ends); -1 only ends it.
  void mark(int phase, cudaStream_t stream) {
    if (used_ == events_.size()) events_.push_back(std::make_unique<Event>());
    events_[used_]->record(stream);
    phase_.resize(used_ + 1);
    phase_[used_] = phase;
    ++used_;
  }

  // Adds every interval recorded since the last collect() to its phase. Waits for the last mark.
  void collect() {
    if (used_ == 0) return;
    events_[used_ - 1]->sync();
    for (size_t i = 0; i + 1 < used_; ++i)
      if (phase_[i] >= 0)
        seconds_[static_cast<size_t>(phase_[i])] +=
            1e-3 * static_cast<double>(events_[i + 1]->ms_since(*events_[i]));
    used_ = 0;
  }

  const std::vector<double>& seconds() const { return seconds_; }

 private:
  std::vector<std::unique_ptr<Event>> events_;  // a pool, reused after collect()
  std::vector<int> phase_;                      // of each recorded mark
  size_t used_ = 0;
  std::vector<double> seconds_;
};

}  // namespace sy::cuda
