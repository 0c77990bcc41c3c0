// Memory per rank of a training run (the CPU trainer's buffers, counted from src/model, src/optim,
// comm/ and src/data; memory.cpp names each one), and the limits of the index types the code uses.
// The trainer checks both before it allocates anything (src/train/rank_memory.h), the planner
// drops the layouts that do not fit.
//
// Arithmetic is in double: every term is a product of a few int64 config values (each < 2^63), so
// no product can overflow (2^63^6 is far below 1.8e308), and results below 2^53 bytes (8 PiB) are
// exact integers. A config of 2^40 micro-batches is then a large number, never a wrapped one.
//
// Variable-size buffers (the rows an expert rank receives, the assignments it runs) are sized at
// the buffer quantile of routing.h (the busiest rank, z = 3.72).
#pragma once

#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/plan/layout.h"
#include "src/plan/routing.h"

namespace sy::plan {

struct MemoryTerm {
  std::string name;  // what it counts, e.g. "logits [N, V] (one micro-batch)"
  std::string keys;  // the config keys that shrink it
  double bytes = 0;
  bool host = false;  // host memory on either device (token data, the evaluation sample)
};

struct MemoryEstimate {
  std::vector<MemoryTerm> terms;
  double total() const;
  const MemoryTerm& largest() const;
};

// What the run needs beyond the config and the layout.
struct MemoryInputs {
  double base_bytes = 0;  // the process itself (cluster base_bytes, or the trainer's RSS so far)
  // Token file splits (elements); 0 = unknown (the planner without the file).
  double train_tokens = 0, val_tokens = 0;
  std::string data_name = "data.path";  // e.g. "'x.h5' /train and /val", for messages
  double threads = 1;  // OpenMP threads of a CPU rank (each holds its own attention tiles)
  // Ranks sharing rank 0's host memory: what rank 0 alone holds (the evaluation sample) is
  // spread over them, since the budget of a rank is its host's memory / its ranks.
  double host_ranks = 1;
};

MemoryEstimate predict_memory(const Config& cfg, const PlanLayout& lay, const RoutingStats& routing,
                              const MemoryInputs& in);

// Elements of this rank's flat parameter buffer (params.h's table: dense group padded to a
// multiple of dp, expert group to a multiple of edp), and of its AdamW moments.
double local_param_elements(const Config& cfg, const PlanLayout& lay);
double local_moment_elements(const Config& cfg, const PlanLayout& lay);
// The same split by group, unpadded and padded: what the gradient reduction moves.
struct ParamGroups {
  double dense = 0, expert = 0;  // padded
  double router = 0;             // elements of the tp-partial router gradients
};
ParamGroups param_groups(const Config& cfg, const PlanLayout& lay);

// Bytes the activations saved for backward take per micro-batch, attention's scores counted
// whole even where the CPU keeps only their row statistics (what the elementwise passes of a step
// stream through: step_time.h).
double activation_bytes(const Config& cfg, const PlanLayout& lay, double assignments, double rows);

// A size the code indexes with a 32-bit int (kernel dims, tokens of a micro-batch, MPI counts)
// that the config makes larger than 2^31 - 1: the expression, its value and the key to change.
struct IndexProblem {
  std::string what;  // e.g. "3 * model.d_model (wqkv columns)"
  double value = 0;
  std::string key;  // the key to shrink
};
std::vector<IndexProblem> index_problems(const Config& cfg, const PlanLayout& lay);

}  // namespace sy::plan
