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
