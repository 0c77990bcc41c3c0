// eval.sample_tokens (SPEC section 7): at each evaluation, a short sample from the model being
// trained, printed on rank 0's log and appended to <run.out_dir>/samples.txt, so that one can read
// what the model has learnt as it trains (as llm.c prints one). The prompt is the start of the
// validation split (its first min(16, seq_len) tokens); the continuation is sampled at
// temperature 1 with the seed run.seed, on rank 0's CPU with the decoder of `switchyard sample`.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "comm/groups.h"
#include "comm/watchdog.h"
#include "src/config/config.h"
#include "src/data/tokenizer.h"
#include "src/data/tokens.h"
#include "src/model/params.h"
#include "src/sample/sampler.h"

namespace sy {

// Rank 0, as a run opens its outputs: <out_dir>/samples.txt of an earlier run is kept as
// samples.txt.prev by a fresh run (as metrics.jsonl), and a run resuming at `resume_step` drops
// the samples of the later steps, which it draws again (a whole sample block at a time: the
// blocks' "sample at step N" headers). Returns a line for the log when it did either, or could
// not (never throws: the samples are a view of the run, not its state).
std::string start_samples_file(const std::string& out_dir, bool resumed, int64_t resume_step);

class EvalSampler {
 public:
  // The tokenizer of `data` is loaded here, so a bad one fails at start (UsageError).
  EvalSampler(const Config& cfg, const TokenSource& data);
  bool enabled() const { return cfg_.eval.sample_tokens > 0; }

  // Collective over g.world() (it gathers the parameters to world rank 0): the sample after
  // `step`. `table` and `params` are this rank's (make_param_table(cfg, shard_layout(layout))).
  // A sample that cannot be drawn or written is a warning in `log`, never a throw: rank 0 draws
  // it alone, and the other ranks would wait for it in their next collective.
  void sample(int64_t step, const comm::ProcessGroups& g, const ParamTable& table,
              const float* params, std::ostream& log, comm::Watchdog* wd = nullptr) const;

 private:
  // Rank 0: decodes from the whole model, prints the sample and appends it to samples.txt.
  void decode(int64_t step, std::vector<float> whole, std::ostream& log) const;

  const Config& cfg_;
  Tokenizer tokenizer_;
  PickableIds pickable_;
  std::vector<int32_t> prompt_;
};

}  // namespace sy
