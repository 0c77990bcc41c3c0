// `device: cuda` (issue 6): the single-GPU training loop over CudaModel (src/model/cuda_model.h).
#pragma once

#include <iosfwd>
#include <string>

#include "src/config/config.h"
#include "src/data/tokens.h"
#include "src/train/trainer.h"

namespace sy {

// Throws UsageError naming what a `device: cuda` run cannot do yet: a build without the CUDA
// backend, more than one rank, checkpoints or --resume. Nothing for `device: cpu`.
void check_gpu_run(const Config& cfg, int world_size, const std::string& resume);

// The whole run on one GPU: metrics.jsonl, progress and eval lines as the CPU trainer writes
// them. Call check_gpu_run first.
TrainSummary train_on_gpu(const Config& cfg, const TokenData& data, std::ostream& log);

}  // namespace sy
